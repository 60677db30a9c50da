//! TIXnGO's organizer API, as docs/tixngo-api.md describes it. Every assumption about the
//! undocumented parts of that API lives in this module, so it can be corrected in one place.

pub mod client;
pub mod contract;
pub mod document;
pub mod error;
pub mod mapping;
pub mod status;
pub mod template;

pub use client::{
    CancelItem, ControlItem, DiffChange, DiffPage, ItemOk, ItemResult, TicketDocument, TicketState,
    TixngoClient,
};
pub use error::{CallError, ErrorClass, ItemError};
pub use status::S360Status;
