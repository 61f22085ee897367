//! An output file (`-oN`, `-oJ`, `-oX`, `-oG`, `--output-csv`): a
//! `ResultWriter` writing into memory, written out through io_uring in chunks.

use super::{Failure, Sink, SinkFuture};
use crate::banner::Service;
use crate::open_hosts::OpenHosts;
use crate::output::{self, ResultWriter};
use crate::result::{PortState, ScanResult};
use crate::store::uring_file::UringFile;
use crate::store::{Finish, StoreConfig, StoreError, StoreReport};
use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

/// Output files are written in chunks of about this size.
const FILE_CHUNK: usize = 256 * 1024;

/// A `Write` that collects bytes for the next io_uring write.
#[derive(Clone, Default)]
struct Spool(Rc<RefCell<Vec<u8>>>);

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(super) struct OutputFile {
    out: UringFile,
    spool: Spool,
    writer: Box<dyn ResultWriter>,
    open_only: bool,
    /// Open ports are written when their banners come (`services`).
    banners: bool,
    /// `--max-open-per-host`, counted as standard output counts it: the
    /// same results in the same order.
    cap: Option<OpenHosts>,
}

impl OutputFile {
    pub(super) async fn create(file: &output::OutputFile, config: &StoreConfig) -> Result<OutputFile, StoreError> {
        let out = UringFile::create(file.path.clone()).map_err(StoreError::output(&file.path))?;
        let spool = Spool::default();
        let writer = output::writer(file.format, spool.clone(), &config.info, true);
        let cap = config.max_open_per_host.map(OpenHosts::capped);
        Ok(OutputFile { out, spool, writer, open_only: config.open_only, banners: config.info.banners, cap })
    }

    async fn drain_spool(&mut self, at_least: usize) -> Result<(), StoreError> {
        if self.spool.0.borrow().len() < at_least.max(1) {
            return Ok(());
        }
        let bytes = std::mem::take(&mut *self.spool.0.borrow_mut());
        self.out.append(bytes).await.map(drop).map_err(StoreError::output(&self.out.path))
    }

    async fn write(&mut self, batch: &[ScanResult], replayed: bool) -> Result<(), StoreError> {
        for r in batch {
            if self.banners && !replayed && r.state == PortState::Open {
                continue;
            }
            self.write_one(r, None)?;
        }
        self.drain_spool(FILE_CHUNK).await
    }

    fn write_one(&mut self, r: &ScanResult, service: Option<&Service>) -> Result<(), StoreError> {
        let shown = self.cap.as_mut().is_none_or(|cap| cap.shows(r));
        if shown && (!self.open_only || r.state.is_found()) {
            self.writer.write(r, service).map_err(StoreError::output(&self.out.path))?;
        }
        Ok(())
    }

    async fn write_services(&mut self, batch: &[(ScanResult, Service)]) -> Result<(), StoreError> {
        for (r, s) in batch {
            self.write_one(r, Some(s))?;
        }
        self.drain_spool(FILE_CHUNK).await
    }
}

impl Sink for OutputFile {
    fn failure(&self) -> Failure {
        Failure::Results
    }

    fn add<'a>(&'a mut self, batch: &'a [ScanResult], _answered: &'a [ScanResult]) -> SinkFuture<'a> {
        Box::pin(self.write(batch, false))
    }

    fn replay<'a>(&'a mut self, batch: &'a [ScanResult]) -> SinkFuture<'a> {
        Box::pin(self.write(batch, true))
    }

    fn services<'a>(&'a mut self, batch: &'a [(ScanResult, Service)]) -> SinkFuture<'a> {
        Box::pin(self.write_services(batch))
    }

    fn finish<'a>(mut self: Box<Self>, finish: &'a Finish, _report: &'a mut StoreReport) -> SinkFuture<'a> {
        Box::pin(async move {
            let path = self.out.path.clone();
            let fail = StoreError::output(&path);
            let written = match self.writer.finish(&finish.run) {
                Ok(()) => self.drain_spool(0).await,
                Err(e) => Err(fail(e)),
            };
            let synced = match written {
                // A pipe or a device (/dev/null) has nothing to make durable, and says EINVAL.
                Ok(()) => match self.out.file.sync_data().await {
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
                    r => r.map_err(fail),
                },
                Err(e) => Err(e),
            };
            let OutputFile { out, .. } = *self;
            let _ = out.file.close().await;
            synced
        })
    }
}
