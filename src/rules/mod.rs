//! Ordering rules as data: the rules file model, its loader, and the per-connection checker.
