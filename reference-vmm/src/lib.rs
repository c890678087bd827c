//! ramstream reference-vmm (work in progress).
