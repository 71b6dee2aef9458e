//! The Strata partition log on disk.
