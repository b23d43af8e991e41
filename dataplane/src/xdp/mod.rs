#[allow(clippy::all, missing_docs, dead_code, unused_imports, non_camel_case_types)]
pub(crate) mod skel {
    include!(concat!(env!("OUT_DIR"), "/headroom.skel.rs"));
}
