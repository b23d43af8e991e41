//! Compiles the XDP program in `bpf/` and generates its libbpf-rs skeleton.
use std::{env, path::PathBuf};

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let bpf_dir = manifest.join("../bpf");
    let src = bpf_dir.join("headroom.bpf.c");
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("headroom.skel.rs");
    let arch_include = "/usr/include/x86_64-linux-gnu";
    SkeletonBuilder::new()
        .source(&src)
        .clang_args([
            "-I".into(),
            bpf_dir.clone().into_os_string(),
            "-I".into(),
            arch_include.into(),
            "-O2".into(),
            "-g".into(),
        ])
        .build_and_generate(&out)
        .unwrap_or_else(|e| panic!("building {}: {e:#}", src.display()));
    println!("cargo:rerun-if-changed={}", src.display());
    println!(
        "cargo:rerun-if-changed={}",
        bpf_dir.join("headroom.h").display()
    );
}
