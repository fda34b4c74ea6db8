//! Rate-limit decision overhead (filled in by the next commit).
fn main() {}
