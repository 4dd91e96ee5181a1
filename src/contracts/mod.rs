//! Consumer contracts: each module speaks one vendor's wire shapes and error envelope, and talks to
//! the core only in domain terms.

pub mod avi;
pub mod vra;
