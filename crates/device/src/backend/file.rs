//! A backend on a regular file or a block device, with positioned I/O.
//!
//! - READ uses `pread`, WRITE `pwrite`; a write with FUA uses `pwritev2(RWF_DSYNC)` and
//!   falls back to `pwrite` + `fdatasync` where the kernel refuses the flag.
//! - SYNCHRONIZE CACHE is `fdatasync`.
//! - UNMAP punches holes (`fallocate(PUNCH_HOLE | KEEP_SIZE)`): punched ranges read back
//!   as zeroes, so the backend reports LBPRZ.
//! - GET LBA STATUS uses `SEEK_DATA` / `SEEK_HOLE` on regular files; block devices
//!   report every block as mapped.
//!
//! The asynchronous (io_uring) path of the file miniport uses [`FileBackend::fd`] for
//! its own submissions and this type for everything else.

use std::fs::{File, OpenOptions};
use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{FallocateFlags, FileType, SeekFrom};
use rustix::io::{Errno, ReadWriteFlags};

use super::{
    BackendError, BackendErrorKind, BackendOp, BackendResult, BlockBackend, LbaStatus, check_range,
    valid_block_size,
};

/// Why a file could not be opened as a backend.
#[derive(Debug, thiserror::Error)]
pub enum FileBackendError {
    /// Opening or inspecting the file failed.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The block size is not 512 or 4096.
    #[error("block size {0} is not supported (use 512 or 4096)")]
    BlockSize(u32),
    /// The file is smaller than one block.
    #[error("{path} is smaller than one block")]
    TooSmall {
        /// The path given.
        path: String,
    },
    /// Neither a regular file nor a block device.
    #[error("{path} is neither a regular file nor a block device")]
    NotAFileOrDevice {
        /// The path given.
        path: String,
    },
}

/// A file-backed disk.
#[derive(Debug)]
pub struct FileBackend {
    file: File,
    block_size: u32,
    num_blocks: u64,
    is_block_device: bool,
    /// Cleared when the kernel refuses `RWF_DSYNC`; then FUA uses `fdatasync`.
    dsync_works: AtomicBool,
    /// Cleared when the file system refuses hole punching.
    punch_works: AtomicBool,
}

impl FileBackend {
    /// Opens `path` read-write. A regular file of size zero is extended to `create_size`
    /// bytes (if given); otherwise the capacity is the file's (or device's) size rounded
    /// down to whole blocks.
    pub fn open(
        path: impl AsRef<Path>,
        block_size: u32,
        create_size: Option<u64>,
    ) -> Result<Self, FileBackendError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        if !valid_block_size(block_size) {
            return Err(FileBackendError::BlockSize(block_size));
        }
        let open_err = |source| FileBackendError::Open {
            path: shown.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create_size.is_some())
            .truncate(false)
            .open(path)
            .map_err(open_err)?;
        let st = rustix::fs::fstat(&file).map_err(|e| open_err(e.into()))?;
        let kind = FileType::from_raw_mode(st.st_mode);
        let is_block_device = kind == FileType::BlockDevice;
        if !is_block_device && kind != FileType::RegularFile {
            return Err(FileBackendError::NotAFileOrDevice { path: shown });
        }
        let mut bytes = if is_block_device {
            rustix::fs::seek(&file, SeekFrom::End(0)).map_err(|e| open_err(e.into()))?
        } else {
            u64::try_from(st.st_size).unwrap_or(0)
        };
        if let (false, 0, Some(size)) = (is_block_device, bytes, create_size) {
            file.set_len(size).map_err(open_err)?;
            bytes = size;
        }
        let num_blocks = bytes / u64::from(block_size);
        if num_blocks == 0 {
            return Err(FileBackendError::TooSmall { path: shown });
        }
        Ok(Self {
            file,
            block_size,
            num_blocks,
            is_block_device,
            dsync_works: AtomicBool::new(true),
            punch_works: AtomicBool::new(true),
        })
    }

    /// The open file, for a miniport that submits its own I/O (io_uring).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Whether the backend is a block device.
    pub fn is_block_device(&self) -> bool {
        self.is_block_device
    }

    fn size(&self) -> u64 {
        self.num_blocks * u64::from(self.block_size)
    }

    fn pwrite_all(&self, mut offset: u64, mut buf: &[u8], dsync: bool) -> Result<(), Errno> {
        while !buf.is_empty() {
            let n = if dsync {
                rustix::io::pwritev2(
                    &self.file,
                    &[IoSlice::new(buf)],
                    offset,
                    ReadWriteFlags::DSYNC,
                )?
            } else {
                rustix::io::pwrite(&self.file, buf, offset)?
            };
            if n == 0 {
                return Err(Errno::IO);
            }
            buf = &buf[n..];
            offset += n as u64;
        }
        Ok(())
    }
}

impl BlockBackend for FileBackend {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }

    fn read_at(&self, mut offset: u64, mut buf: &mut [u8]) -> BackendResult<()> {
        check_range(offset, buf.len(), self.size(), BackendOp::Read)?;
        while !buf.is_empty() {
            match rustix::io::pread(&self.file, &mut *buf, offset) {
                Ok(0) => {
                    // A file truncated behind our back: the missing tail reads as zeroes.
                    buf.fill(0);
                    return Ok(());
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(BackendError::from_os(BackendOp::Read, e)),
            }
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> BackendResult<()> {
        check_range(offset, buf.len(), self.size(), BackendOp::Write)?;
        let err = |e| BackendError::from_os(BackendOp::Write, e);
        if fua && self.dsync_works.load(Ordering::Relaxed) {
            match self.pwrite_all(offset, buf, true) {
                Ok(()) => return Ok(()),
                Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => {
                    self.dsync_works.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(err(e)),
            }
        }
        self.pwrite_all(offset, buf, false).map_err(err)?;
        if fua {
            rustix::fs::fdatasync(&self.file).map_err(err)?;
        }
        Ok(())
    }

    fn flush(&self) -> BackendResult<()> {
        rustix::fs::fdatasync(&self.file).map_err(|e| BackendError::from_os(BackendOp::Flush, e))
    }

    fn is_thin(&self) -> bool {
        true
    }

    fn unmap(&self, lba: u64, blocks: u64) -> BackendResult<()> {
        let bs = u64::from(self.block_size);
        let (offset, len) = match (lba.checked_mul(bs), blocks.checked_mul(bs)) {
            (Some(o), Some(l)) if o.checked_add(l).is_some_and(|end| end <= self.size()) => (o, l),
            _ => {
                return Err(BackendError::new(
                    BackendErrorKind::OutOfRange,
                    BackendOp::Unmap,
                ));
            }
        };
        if len == 0 {
            return Ok(());
        }
        if self.punch_works.load(Ordering::Relaxed) {
            let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
            match rustix::fs::fallocate(&self.file, flags, offset, len) {
                Ok(()) => return Ok(()),
                Err(Errno::OPNOTSUPP | Errno::NOSYS) => {
                    self.punch_works.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(BackendError::from_os(BackendOp::Unmap, e)),
            }
        }
        // No hole punching here: write zeroes, which keeps LBPRZ true.
        let zeroes = vec![0u8; usize::try_from(len.min(1 << 20)).unwrap_or(1 << 20)];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(zeroes.len() as u64) as usize;
            self.pwrite_all(offset + done, &zeroes[..n], false)
                .map_err(|e| BackendError::from_os(BackendOp::Unmap, e))?;
            done += n as u64;
        }
        Ok(())
    }

    fn write_zeroes(&self, lba: u64, blocks: u64) -> BackendResult<()> {
        self.unmap(lba, blocks).map_err(|e| BackendError {
            op: BackendOp::Write,
            ..e
        })
    }

    fn lba_status(&self, lba: u64, max_blocks: u64) -> BackendResult<(LbaStatus, u64)> {
        if lba >= self.num_blocks {
            return Err(BackendError::new(
                BackendErrorKind::OutOfRange,
                BackendOp::Status,
            ));
        }
        let max = max_blocks.max(1).min(self.num_blocks - lba);
        if self.is_block_device {
            return Ok((LbaStatus::Mapped, max));
        }
        let bs = u64::from(self.block_size);
        let pos = lba * bs;
        let end = (lba + max) * bs;
        let file_end = self.size();
        // Where does the next data start, and (from there) where does the next hole start?
        let data = match rustix::fs::seek(&self.file, SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(Errno::NXIO) => file_end, // no data after pos: a hole up to the end
            Err(Errno::INVAL | Errno::OPNOTSUPP) => return Ok((LbaStatus::Mapped, max)),
            Err(e) => return Err(BackendError::from_os(BackendOp::Status, e)),
        };
        if data >= pos + bs {
            // The block at pos is all hole; the hole ends at the block holding the next
            // data byte. A block only partly covered by data counts as mapped.
            let hole_end = (data / bs * bs).min(end);
            let run = (hole_end - pos) / bs;
            return Ok((LbaStatus::Deallocated, run.clamp(1, max)));
        }
        let hole = match rustix::fs::seek(&self.file, SeekFrom::Hole(data.max(pos))) {
            Ok(h) => h,
            Err(e) => return Err(BackendError::from_os(BackendOp::Status, e)),
        };
        // Data runs to the hole; a block partly covered by data counts as mapped.
        let data_end = hole.div_ceil(bs) * bs;
        let run = (data_end.min(end).saturating_sub(pos) / bs).max(1);
        Ok((LbaStatus::Mapped, run.min(max)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_backend_round_trips_and_punches_holes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let fb = FileBackend::open(&path, 512, Some(4 << 20)).unwrap();
        assert_eq!(fb.num_blocks(), 8192);
        let data = vec![0x5Au8; 4096];
        fb.write_at(1 << 20, &data, true).unwrap();
        let mut back = vec![0u8; 4096];
        fb.read_at(1 << 20, &mut back).unwrap();
        assert_eq!(back, data);
        fb.flush().unwrap();
        let lba = (1 << 20) / 512;
        // Hole detection depends on the file system's granularity; the written range
        // itself must report mapped.
        let (st, _) = fb.lba_status(lba, 8).unwrap();
        assert_eq!(st, LbaStatus::Mapped);
        fb.unmap(lba, 8).unwrap();
        fb.read_at(1 << 20, &mut back).unwrap();
        assert!(back.iter().all(|b| *b == 0));
        assert!(fb.read_at(4 << 20, &mut back).is_err());
    }

    #[test]
    fn file_backend_reports_holes_as_deallocated_where_the_fs_supports_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse.img");
        let fb = FileBackend::open(&path, 4096, Some(64 << 20)).unwrap();
        fb.write_at(8 << 20, &[1u8; 4096], false).unwrap();
        let lba = (8 << 20) / 4096;
        // Whatever the file system's granularity, the written block is mapped and the
        // statuses tile the device without gaps.
        assert_eq!(fb.lba_status(lba, 1).unwrap(), (LbaStatus::Mapped, 1));
        let mut at = 0;
        while at < fb.num_blocks() {
            let (st, run) = fb.lba_status(at, fb.num_blocks()).unwrap();
            assert!(run >= 1 && at + run <= fb.num_blocks());
            if (at..at + run).contains(&lba) {
                assert_eq!(st, LbaStatus::Mapped);
            }
            at += run;
        }
        assert_eq!(at, fb.num_blocks());
    }

    #[test]
    fn file_backend_rejects_bad_block_size_and_tiny_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.img");
        assert!(matches!(
            FileBackend::open(&path, 1024, Some(1 << 20)),
            Err(FileBackendError::BlockSize(1024))
        ));
        std::fs::write(&path, [0u8; 100]).unwrap();
        assert!(matches!(
            FileBackend::open(&path, 512, None),
            Err(FileBackendError::TooSmall { .. })
        ));
    }
}
