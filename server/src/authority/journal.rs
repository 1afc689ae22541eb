//! The journal of one kind of authority: which stored authority is active, prepared and old, kept
//! in one JSON file that is replaced atomically, so a crash leaves either the old or the new state.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The slots of one kind of authority, naming each stored authority by its generation: the name
/// of its directory next to the journal.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Journal {
    /// The generation the next created authority gets; generations are never reused.
    pub(super) next_generation: u64,
    pub(super) active: Option<SlotRecord>,
    pub(super) prepared: Option<SlotRecord>,
    pub(super) old: Option<SlotRecord>,
}

/// One occupied slot.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SlotRecord {
    pub(super) generation: u64,
    /// Whether an operator tainted the authority; only the old slot can be tainted.
    #[serde(default)]
    pub(super) tainted: bool,
}

impl Journal {
    /// Reads the journal in `dir`, or returns an empty one when there is none yet.
    pub(super) fn load(dir: &Path) -> Result<Self, String> {
        let path = journal_path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|error| format!("invalid journal {}: {error}", path.display())),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(format!("failed to read {}: {error}", path.display())),
        }
    }

    /// Replaces the journal in `dir` atomically.
    pub(super) fn save(&self, dir: &Path) -> io::Result<()> {
        // serde_json fails only on maps with non-string keys, and the journal has no map.
        let text = serde_json::to_vec_pretty(self).unwrap_or_default();
        signet_core::fs::write_atomic(&journal_path(dir), &text, JOURNAL_FILE_MODE)
    }

    /// Returns a new generation and advances the counter.
    pub(super) fn allocate_generation(&mut self) -> u64 {
        let generation = self.next_generation;
        self.next_generation += 1;
        generation
    }

    /// Returns the generations the journal names.
    pub(super) fn generations(&self) -> impl Iterator<Item = u64> + '_ {
        [self.active, self.prepared, self.old]
            .into_iter()
            .flatten()
            .map(|slot| slot.generation)
    }
}

/// Returns the directory of the authority of `generation`.
pub(super) fn generation_dir(dir: &Path, generation: u64) -> PathBuf {
    dir.join(generation.to_string())
}

fn journal_path(dir: &Path) -> PathBuf {
    dir.join(JOURNAL_FILE)
}

const JOURNAL_FILE: &str = "journal.json";

/// Only the server reads the journal.
const JOURNAL_FILE_MODE: u32 = 0o600;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_journal_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Journal::load(dir.path()).unwrap(), Journal::default());
    }

    #[test]
    fn saved_journal_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::default();
        let generation = journal.allocate_generation();
        journal.active = Some(SlotRecord {
            generation,
            tainted: false,
        });
        journal.old = Some(SlotRecord {
            generation: journal.allocate_generation(),
            tainted: true,
        });

        journal.save(dir.path()).unwrap();

        assert_eq!(Journal::load(dir.path()).unwrap(), journal);
        assert_eq!(journal.generations().collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn damaged_journal_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(JOURNAL_FILE), "{").unwrap();

        let error = Journal::load(dir.path()).unwrap_err();

        assert!(error.contains(JOURNAL_FILE), "{error}");
    }
}
