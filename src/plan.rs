//! Pipeline planning, reply reassembly and redirect decisions. (STUB: being written.)
