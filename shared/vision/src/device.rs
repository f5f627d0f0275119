//! Choosing where networks run: `--device auto|cpu|cuda[:N]`.
//!
//! libtorch's CUDA half (`libtorch_cuda.so`) is not a link-time dependency of our binaries
//! (the linker drops it, and CPU-only hosts do not have its ~2 GB of CUDA libraries), so
//! it is loaded at run time with `dlopen` before the first CUDA query. On a CPU-only host
//! that load fails harmlessly and everything runs on the CPU.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use tch::{Cuda, Device};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The first CUDA device when one is usable, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// CUDA device `N` (`cuda` alone means 0); an error when it is not there.
    Cuda(usize),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DeviceError {
    #[error("unknown device {0:?}: expected auto, cpu, cuda or cuda:N")]
    Parse(String),
    #[error("CUDA device {requested} requested, but {available} CUDA device(s) are usable here{detail}")]
    CudaUnavailable { requested: usize, available: usize, detail: String },
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| DeviceError::Parse(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => write!(f, "auto"),
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceChoice {
    /// Resolve to a tch device, loading the CUDA runtime first when it may be wanted.
    pub fn resolve(self) -> Result<Device, DeviceError> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => {
                // a failed load just means no CUDA here: auto then picks the CPU
                let _ = load_cuda_runtime();
                Ok(if Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu })
            }
            DeviceChoice::Cuda(n) => {
                let loaded = load_cuda_runtime();
                let available = if Cuda::is_available() { Cuda::device_count().max(0) as usize } else { 0 };
                if n < available {
                    Ok(Device::Cuda(n))
                } else {
                    let detail = match loaded {
                        Err(e) => format!(" (libtorch_cuda.so did not load: {e})"),
                        Ok(()) => String::new(),
                    };
                    Err(DeviceError::CudaUnavailable { requested: n, available, detail })
                }
            }
        }
    }
}

/// `dlopen("libtorch_cuda.so", RTLD_NOW | RTLD_GLOBAL)` once per process. The outcome is
/// remembered: `Err` carries the loader's message (expected on CPU-only hosts).
pub fn load_cuda_runtime() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            // SAFETY: dlopen with a constant NUL-terminated name; the handle is kept for the
            // life of the process (never dlclose'd) because libtorch registers its CUDA
            // backend from static initialisers in that library.
            let handle = unsafe { libc::dlopen(c"libtorch_cuda.so".as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if handle.is_null() {
                // SAFETY: dlerror returns a thread-local C string or null.
                let msg = unsafe { libc::dlerror() };
                let text = if msg.is_null() {
                    "unknown dlopen error".to_string()
                } else {
                    // SAFETY: non-null dlerror result is a valid C string until the next dl* call.
                    unsafe { std::ffi::CStr::from_ptr(msg) }.to_string_lossy().into_owned()
                };
                Err(text)
            } else {
                Ok(())
            }
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert_eq!("CPU".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceChoice::Cuda(3)));
        for bad in ["", "cuda:", "cuda:x", "tpu", "cuda:-1"] {
            assert!(matches!(bad.parse::<DeviceChoice>(), Err(DeviceError::Parse(_))), "{bad}");
        }
        assert_eq!(DeviceChoice::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn cpu_and_auto_always_resolve() {
        assert_eq!(DeviceChoice::Cpu.resolve(), Ok(Device::Cpu));
        let auto = DeviceChoice::Auto.resolve().unwrap();
        // auto picks CUDA exactly when CUDA is usable
        assert_eq!(auto.is_cuda(), Cuda::is_available());
    }

    #[test]
    fn missing_cuda_device_is_a_clear_error() {
        let err = DeviceChoice::Cuda(64).resolve().unwrap_err();
        assert!(matches!(err, DeviceError::CudaUnavailable { requested: 64, .. }));
    }
}
