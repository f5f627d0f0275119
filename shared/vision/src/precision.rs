//! Numeric precision of the network's forward pass: float32, or bfloat16 autocast on the CPU.
//!
//! bf16 autocast runs convolutions and matrix products in bfloat16 while the weights, their
//! gradients, BatchNorm statistics and the optimizer stay float32 ("fp32 master weights").
//! On a CPU with AVX512-BF16 (or AMX) oneDNN's bf16 kernels are about twice as fast as
//! float32 (`../shared/notes/cpu-training-levers.md`); elsewhere they are emulated and slower,
//! so [`Precision::Auto`] picks bf16 only where the CPU has native support.
//!
//! tch 0.24's `autocast` helper drives CUDA's switch only. libtorch's CPU switch is
//! `at::autocast::set_autocast_enabled(c10::DeviceType::CPU, bool)` (with
//! `set_autocast_dtype`), which torch-sys does not wrap. They are ordinary exported C++
//! functions whose arguments are one-byte enums and a bool, so they are called here through
//! their Itanium-mangled names (the ABI of every Linux libtorch build).

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::Device;

/// `c10::DeviceType::CPU`.
const DEVICE_CPU: i8 = 0;
/// `c10::ScalarType::BFloat16`.
const SCALAR_BFLOAT16: i8 = 15;

mod ffi {
    extern "C" {
        #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
        pub fn set_autocast_enabled(device: i8, enabled: bool);
        #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
        pub fn is_autocast_enabled(device: i8) -> bool;
        #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
        pub fn set_autocast_dtype(device: i8, dtype: i8);
        #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
        pub fn get_autocast_dtype(device: i8) -> i8;
        #[link_name = "_ZN2at8autocast17increment_nestingEv"]
        pub fn increment_nesting() -> i32;
        #[link_name = "_ZN2at8autocast17decrement_nestingEv"]
        pub fn decrement_nesting() -> i32;
        #[link_name = "_ZN2at8autocast11clear_cacheEv"]
        pub fn clear_cache();
    }
}

/// What the user asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// float32 everywhere (the official code; bit-comparable with the reference vectors).
    #[default]
    F32,
    /// bf16 autocast on the CPU (on CUDA this is float32; use `--amp` there).
    Bf16,
    /// bf16 on CPUs with native bf16 instructions, float32 elsewhere.
    Auto,
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "auto" => Ok(Precision::Auto),
            other => Err(format!("unknown precision {other:?}: expected f32, bf16 or auto")),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Auto => "auto",
        })
    }
}

impl Precision {
    /// Whether bf16 autocast is used on `device`.
    pub fn uses_bf16(self, device: Device) -> bool {
        if device != Device::Cpu {
            return false;
        }
        match self {
            Precision::F32 => false,
            Precision::Bf16 => true,
            Precision::Auto => cpu_has_native_bf16(),
        }
    }
}

/// AVX512-BF16 or AMX-BF16, as the kernel reports them.
pub fn cpu_has_native_bf16() -> bool {
    static NATIVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NATIVE.get_or_init(|| {
        std::fs::read_to_string("/proc/cpuinfo")
            .map(|text| {
                text.lines()
                    .filter(|l| l.starts_with("flags"))
                    .any(|l| l.split_whitespace().any(|f| f == "avx512_bf16" || f == "amx_bf16"))
            })
            .unwrap_or(false)
    })
}

/// Runs `f` with CPU bf16 autocast on this thread when `enabled` (as `torch.autocast("cpu",
/// torch.bfloat16)` does), restoring the previous state afterwards. Autocast state is
/// thread-local; libtorch's CPU backward runs on the calling thread.
pub fn with_cpu_bf16<T>(enabled: bool, f: impl FnOnce() -> T) -> T {
    if !enabled {
        return f();
    }
    struct Restore {
        was_enabled: bool,
        was_dtype: i8,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: plain libtorch calls on thread-local autocast state; arguments are
            // valid enum values obtained from libtorch itself or the constants above.
            unsafe {
                if ffi::decrement_nesting() == 0 {
                    ffi::clear_cache();
                }
                ffi::set_autocast_enabled(DEVICE_CPU, self.was_enabled);
                ffi::set_autocast_dtype(DEVICE_CPU, self.was_dtype);
            }
        }
    }
    // SAFETY: as above.
    let _restore = unsafe {
        let restore = Restore { was_enabled: ffi::is_autocast_enabled(DEVICE_CPU), was_dtype: ffi::get_autocast_dtype(DEVICE_CPU) };
        ffi::set_autocast_dtype(DEVICE_CPU, SCALAR_BFLOAT16);
        ffi::set_autocast_enabled(DEVICE_CPU, true);
        ffi::increment_nesting();
        restore
    };
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn cpu_autocast_runs_convolutions_in_bf16_and_restores_the_state() {
        let x = Tensor::randn([1, 3, 8, 8], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([4, 3, 3, 3], (Kind::Float, Device::Cpu));
        let plain = x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        assert_eq!(plain.kind(), Kind::Float);
        let cast = with_cpu_bf16(true, || x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1));
        assert_eq!(cast.kind(), Kind::BFloat16);
        // same numbers to bf16's precision (8 bits of mantissa)
        let diff = (cast.to_kind(Kind::Float) - &plain).abs().max().double_value(&[]);
        let scale = plain.abs().max().double_value(&[]);
        assert!(diff <= 0.02 * scale, "{diff} vs {scale}");
        // off again afterwards, and a disabled call is plain float32
        assert_eq!(x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1).kind(), Kind::Float);
        assert_eq!(with_cpu_bf16(false, || x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1)).kind(), Kind::Float);
        // SAFETY: reads thread-local state.
        assert!(!unsafe { ffi::is_autocast_enabled(DEVICE_CPU) });
    }

    #[test]
    fn precision_parses_and_only_uses_bf16_on_the_cpu() {
        assert_eq!("BF16".parse(), Ok(Precision::Bf16));
        assert_eq!("fp32".parse(), Ok(Precision::F32));
        assert!("half".parse::<Precision>().is_err());
        assert!(Precision::Bf16.uses_bf16(Device::Cpu));
        assert!(!Precision::Bf16.uses_bf16(Device::Cuda(0)));
        assert!(!Precision::F32.uses_bf16(Device::Cpu));
        assert_eq!(Precision::Auto.uses_bf16(Device::Cpu), cpu_has_native_bf16());
    }
}
