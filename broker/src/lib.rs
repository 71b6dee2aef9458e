//! The Strata broker: networking, request handling, storage and metadata.
