//! Process exit codes (sysexits.h), shared by every command and by the tools crate.

/// Success.
pub const EXIT_OK: u8 = 0;
/// `status`: TIXnGO does not know the ticket.
pub const EXIT_NOT_FOUND: u8 = 1;
/// Command-line usage error (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;
/// The input (a message file) is invalid (EX_DATAERR).
pub const EXIT_DATA: u8 = 65;
/// RabbitMQ or TIXnGO unavailable at start-up (EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: u8 = 69;
/// Internal error (EX_SOFTWARE).
pub const EXIT_SOFTWARE: u8 = 70;
/// Interrupted by SIGINT/SIGTERM before the work was done (EX_TEMPFAIL): run it again to go on.
pub const EXIT_INTERRUPTED: u8 = 75;
/// Invalid configuration (EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;
