//! The CLI's own output (as opposed to logs).

/// Prints a line to stdout.
#[allow(clippy::print_stdout)]
pub fn println_out(s: &str) {
    println!("{s}");
}
