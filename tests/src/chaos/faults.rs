//! The nemeses built on the fault mechanisms of [`crate::power_loss`] and
//! [`crate::disk_full`]: they change how a broker starts (another binary, a data
//! directory on a disk of their own) before injecting anything.

use std::path::PathBuf;

use super::cluster::Cluster;
use super::error::ChaosError;
use super::nemesis::{Nemesis, Site};
use super::node::{NodeSpec, sibling_binary};
use crate::disk_full::SmallDisk;
use crate::power_loss;

/// The tmpfs a disk-full run's broker writes to. Small enough that filling it costs
/// little memory, large enough for the run's data: at the CI rate a run writes a few
/// megabytes.
const DISK_BYTES: u64 = 256 << 20;

/// `kill -9`, then the data directory cut back to what the broker had fsynced (see
/// [`power_loss::apply`]), then a restart on it. Every broker runs as
/// `strata-recorded-broker`, which logs what each fsync made durable.
#[derive(Debug, Default)]
pub struct PowerLoss {
    /// Each broker's sync log, by index, once prepared.
    sync_logs: Vec<PathBuf>,
}

impl PowerLoss {
    /// Cuts broker `node`'s power: `kill -9`, then its data directory cut back to what
    /// it had fsynced. Returns the bytes dropped.
    ///
    /// # Errors
    /// If the broker was not prepared, or the data directory cannot be rewritten.
    pub fn cut_power(&self, cluster: &mut Cluster, node: usize) -> Result<u64, ChaosError> {
        let sync_log = self
            .sync_logs
            .get(node)
            .ok_or_else(|| ChaosError::InvalidInput("power loss before prepare".into()))?;
        cluster.node(node).kill_9();
        let dropped = power_loss::apply(cluster.data_dir(node), sync_log)
            .map_err(ChaosError::io("apply the power loss"))?;
        Ok(dropped.bytes_dropped())
    }
}

impl Nemesis for PowerLoss {
    fn name(&self) -> &'static str {
        "power-loss"
    }

    fn prepare(&mut self, spec: &mut NodeSpec) -> Result<(), ChaosError> {
        spec.binary = sibling_binary("strata-recorded-broker")?;
        let sync_log = spec.data_dir.with_extension("sync-log");
        spec.env.push((
            power_loss::SYNC_LOG_VARIABLE.to_owned(),
            sync_log.display().to_string(),
        ));
        self.sync_logs.push(sync_log);
        Ok(())
    }

    fn inject(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        let dropped = self.cut_power(site.cluster, site.node)?;
        eprintln!(
            "power loss of broker {}: {dropped} bytes dropped",
            site.node + 1
        );
        Ok(Some(format!("{dropped} bytes dropped")))
    }

    fn heal(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        site.cluster.restart(site.node)?;
        Ok(None)
    }
}

/// Each broker's data directory on a small tmpfs of its own; the fault fills the
/// target's, the heal frees it. Dropping the nemesis unmounts the disks, after the
/// brokers are killed.
#[derive(Debug, Default)]
pub struct DiskFull {
    /// Each broker's mounted disk, by index, once prepared.
    disks: Vec<SmallDisk>,
}

impl DiskFull {
    fn disk(&mut self, node: usize) -> Result<&mut SmallDisk, ChaosError> {
        self.disks
            .get_mut(node)
            .ok_or_else(|| ChaosError::InvalidInput("disk full before prepare".into()))
    }
}

impl Nemesis for DiskFull {
    fn name(&self) -> &'static str {
        "disk-full"
    }

    fn prepare(&mut self, spec: &mut NodeSpec) -> Result<(), ChaosError> {
        let disk = SmallDisk::mount(DISK_BYTES)
            .map_err(ChaosError::io("mount a small tmpfs (this needs root)"))?;
        let name = spec.data_dir.file_name().map(ToOwned::to_owned);
        spec.data_dir = disk.path().join(name.unwrap_or_else(|| "broker".into()));
        self.disks.push(disk);
        Ok(())
    }

    fn inject(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        self.disk(site.node)?
            .fill()
            .map(|_| None)
            .map_err(ChaosError::io("fill the broker's disk"))
    }

    fn heal(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        self.disk(site.node)?
            .free()
            .map_err(ChaosError::io("free the broker's disk"))?;
        Ok(None)
    }
}
