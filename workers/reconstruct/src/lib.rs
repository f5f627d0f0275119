//! The reconstruct stage as a plain library function: bytes and settings in, result out.
