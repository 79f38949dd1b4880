//! Developer task runner (`cargo xtask ...`): provisions and runs the local stack.
fn main() {}
