pub mod metadata;
pub mod placement;
