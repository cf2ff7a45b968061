//! See lib.rs for what lives here.
