//! The same commands give the same image, applied twice from scratch or resumed from a
//! snapshot taken halfway: what every broker, and every restarted one, relies on.

use std::sync::Arc;

use proptest::prelude::*;
use tokio::sync::watch;

use super::super::*;
use super::model::{command, op};

fn machine() -> MetadataStateMachine {
    MetadataStateMachine::new(watch::channel(Arc::new(Image::default())).0)
}

proptest! {
    #[test]
    fn replays_and_snapshots_give_the_same_image(
        ops in proptest::collection::vec(op(), 1..60),
        cut in any::<prop::sample::Index>(),
    ) {
        let cut = cut.index(ops.len());
        let mut first = machine();
        let mut second = machine();
        let mut commands = Vec::new();
        for (index, op) in (1u64..).zip(&ops) {
            let command = encode_command(&command(op, first.image()));
            let outcome = first.apply_bytes(index, &command);
            prop_assert_eq!(second.apply_bytes(index, &command), outcome);
            commands.push(command);
        }
        prop_assert_eq!(first.image(), second.image());

        let mut resumed = machine();
        let mut halfway = machine();
        for (index, command) in (1u64..).zip(&commands[..cut]) {
            halfway.apply_bytes(index, command);
        }
        resumed.restore(&halfway.snapshot()).map_err(TestCaseError::fail)?;
        for (index, command) in (1u64..).zip(&commands).skip(cut) {
            resumed.apply_bytes(index, command);
        }
        prop_assert_eq!(resumed.image(), first.image());
    }
}
