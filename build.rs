//! Links libvpx (VP8) statically and generates its bindings for the target.
//!
//! Why not a -sys crate: env-libvpx-sys finds libvpx through pkg-config,
//! which refuses to link a system library statically and needs extra
//! cross-compiling setup, and it pins a second bindgen; here bindgen (the
//! version v4l already builds) reads Debian's headers for the real target,
//! so struct layouts are right on armhf too. Static, because the appliance
//! is one file: no libvpx soname to match on the board, nothing more to
//! copy into the QEMU test's initramfs.
//!
//! The library comes from Debian's `libvpx-dev`: the host's for a native
//! build; for the ARM targets the one scripts/cross-build.sh unpacks under
//! target/vpx/ (`RTCAM_VPX_LIB_DIR_<target>` and `RTCAM_VPX_INCLUDE_DIR_<target>`
//! in .cargo/config.toml: library and headers of the same package).
//! `RTCAM_VPX_LIB_DIR` overrides.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/encode/vpx.h");
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let per_target = format!("RTCAM_VPX_LIB_DIR_{}", target.replace('-', "_"));
    println!("cargo:rerun-if-env-changed=RTCAM_VPX_LIB_DIR");
    println!("cargo:rerun-if-env-changed={per_target}");
    let lib_dir = env::var(&per_target)
        .or_else(|_| env::var("RTCAM_VPX_LIB_DIR"))
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/usr/lib").join(multiarch(&target)));
    if !lib_dir.join("libvpx.a").exists() {
        panic!(
            "{}/libvpx.a not found: install Debian's libvpx-dev (scripts/setup.sh does) \
             or, for an ARM target, run scripts/cross-build.sh --toolchain-only {target}",
            lib_dir.display()
        );
    }
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=static=vpx");
    println!("cargo:rustc-link-lib=m");

    // The headers of the very package the library came from, where given
    // (cross builds): the ABI version and struct layouts must match it.
    let include = format!("RTCAM_VPX_INCLUDE_DIR_{}", target.replace('-', "_"));
    println!("cargo:rerun-if-env-changed={include}");
    let include_args = env::var(&include).map(|dir| format!("-I{dir}")).into_iter();

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("vpx.rs");
    let bindings = bindgen::Builder::default()
        .header("src/encode/vpx.h")
        .clang_args(include_args)
        .allowlist_function("vpx_(codec|img)_.*")
        .allowlist_type("vpx_.*|vp8e_enc_control_id")
        .allowlist_var("VPX_.*|VP8_.*")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("generating the libvpx bindings")
        .to_string()
        // Edition 2024 wants extern blocks marked unsafe; this bindgen
        // predates that.
        .replace("extern \"C\" {", "unsafe extern \"C\" {");
    std::fs::write(&out, bindings).expect("writing the libvpx bindings");
}

/// Debian's multiarch directory for a Rust target.
fn multiarch(target: &str) -> &'static str {
    match target.split('-').next() {
        Some("x86_64") => "x86_64-linux-gnu",
        Some("aarch64") => "aarch64-linux-gnu",
        Some(a) if a.starts_with("armv7") || a == "arm" => "arm-linux-gnueabihf",
        _ => panic!("no Debian multiarch directory known for {target}: set RTCAM_VPX_LIB_DIR"),
    }
}
