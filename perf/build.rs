//! Compiles the generator, sink and redirect XDP programs in `bpf/` into
//! objects that the perf tools embed and load with libbpf-rs.
use std::{env, path::PathBuf};

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let bpf_dir = manifest.join("../bpf");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for name in ["pktgen", "pktgen_sink", "redirect"] {
        let src = bpf_dir.join(format!("{name}.bpf.c"));
        let obj = out_dir.join(format!("{name}.bpf.o"));
        SkeletonBuilder::new()
            .source(&src)
            .obj(&obj)
            .clang_args([
                "-I".into(),
                bpf_dir.clone().into_os_string(),
                "-I".into(),
                "/usr/include/x86_64-linux-gnu".into(),
                "-O2".into(),
                "-g".into(),
            ])
            .build()
            .unwrap_or_else(|e| panic!("building {}: {e:#}", src.display()));
        println!("cargo:rerun-if-changed={}", src.display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        bpf_dir.join("pktgen.h").display()
    );
}
