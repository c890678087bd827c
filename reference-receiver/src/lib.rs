//! ramstream reference-receiver (work in progress).
