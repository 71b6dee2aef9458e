//! The nemeses built on the fault mechanisms of [`crate::power_loss`] and
//! [`crate::disk_full`]: they change how a broker starts (another binary, a data
//! directory on a disk of their own) before injecting anything.

use std::path::PathBuf;

use super::cluster::Cluster;
use super::error::ChaosError;
use super::nemesis::Nemesis;
use super::node::{NodeSpec, sibling_binary};
use crate::disk_full::SmallDisk;
use crate::power_loss;

/// The tmpfs a disk-full run's broker writes to. Small enough that filling it costs
/// little memory, large enough for the run's data: at the CI rate a run writes a few
/// megabytes.
const DISK_BYTES: u64 = 256 << 20;

/// `kill -9`, then the data directory cut back to what the broker had fsynced (see
/// [`power_loss::apply`]), then a restart on it. The broker runs as
/// `strata-recorded-broker`, which logs what each fsync made durable.
#[derive(Debug, Default)]
pub struct PowerLoss {
    /// The broker's sync log, once prepared.
    sync_log: Option<PathBuf>,
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
        self.sync_log = Some(sync_log);
        Ok(())
    }

    fn inject(&mut self, cluster: &mut Cluster, node: usize) -> Result<(), ChaosError> {
        let sync_log = self
            .sync_log
            .as_ref()
            .ok_or_else(|| ChaosError::InvalidInput("power loss before prepare".into()))?;
        cluster.node(node).kill_9();
        let dropped = power_loss::apply(cluster.data_dir(node), sync_log)
            .map_err(ChaosError::io("apply the power loss"))?;
        eprintln!(
            "power loss of broker {node}: {} bytes dropped",
            dropped.bytes_dropped()
        );
        Ok(())
    }

    fn heal(&mut self, cluster: &mut Cluster, node: usize) -> Result<(), ChaosError> {
        cluster.restart(node).map(drop)
    }
}

/// The broker's data directory on a small tmpfs; the fault fills it, the heal frees it.
/// Dropping the nemesis unmounts the disk, after the brokers are killed.
#[derive(Debug, Default)]
pub struct DiskFull {
    /// The mounted disk, once prepared.
    disk: Option<SmallDisk>,
}

impl DiskFull {
    fn disk(&mut self) -> Result<&mut SmallDisk, ChaosError> {
        self.disk
            .as_mut()
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
        self.disk = Some(disk);
        Ok(())
    }

    fn inject(&mut self, _cluster: &mut Cluster, _node: usize) -> Result<(), ChaosError> {
        self.disk()?
            .fill()
            .map(drop)
            .map_err(ChaosError::io("fill the broker's disk"))
    }

    fn heal(&mut self, _cluster: &mut Cluster, _node: usize) -> Result<(), ChaosError> {
        self.disk()?
            .free()
            .map_err(ChaosError::io("free the broker's disk"))
    }
}
