//! Sans-IO AT session (issue #4).
pub mod error;
pub mod lexer;
