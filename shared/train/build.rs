// torch-sys sets no rpath on final binaries; embed one so tests and binaries find
// libtorch without LD_LIBRARY_PATH (which still wins, so a GPU host can swap in its own).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
