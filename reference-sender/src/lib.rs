//! ramstream reference-sender (work in progress).
