//! Transcript tests of the whole session.
