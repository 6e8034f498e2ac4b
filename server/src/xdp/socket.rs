//! One AF_XDP socket: its packet memory (UMEM) and its four rings, bound to one receive queue
//! of an interface (xdpilone maps them; the memory is ours).
//!
//! Every frame circulates: the fill ring hands it to the kernel to receive into, the receive
//! ring brings it back with a query, the reply is written over the query and the frame goes out
//! on the transmit ring, and the completion ring returns it for filling again. A query without
//! a reply goes straight back to filling. No frame is copied between rings.

use std::ffi::CString;
use std::num::NonZeroU32;
use std::os::fd::RawFd;
use std::ptr::NonNull;

use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

/// Bytes per frame: a whole reply (at most 1,232 bytes of DNS, plus Ethernet, two VLAN tags,
/// IPv6 and UDP headers, behind the kernel's headroom) fits one.
pub const FRAME_SIZE: u32 = 2048;
/// Frames per socket (8 MiB).
const FRAMES: u32 = 4096;
/// Entries in each ring.
const RING: u32 = 2048;

/// The packet memory, unmapped on drop.
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

impl Area {
    fn new(len: usize) -> Result<Area, String> {
        // SAFETY: an anonymous private mapping; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!(
                "mapping {len} bytes of packet memory: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Area {
            ptr: NonNull::new(p.cast()).expect("mmap does not return null on success"),
            len,
        })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used: the socket (and its rings), which
        // the kernel writes through, are dropped first (field order of `XdpSocket`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// An AF_XDP socket on one queue, with its memory and rings. Not `Send`: made on the thread
/// that serves it.
pub struct XdpSocket {
    device: DeviceQueue,
    rx: RingRx,
    tx: RingTx,
    user: User,
    _umem: Umem,
    area: Area,
    /// Frames neither with the kernel nor in use.
    free: Vec<u64>,
    /// The descriptors of the batch being answered.
    received: Vec<XdpDesc>,
    /// Whether the driver moves frames without copying them.
    pub zero_copy: bool,
    /// Replies dropped since the transmit ring was full.
    pub tx_ring_full: u64,
}

impl XdpSocket {
    /// Opens a socket on `iface` queue `queue`: zero-copy if the driver can, copy mode
    /// otherwise.
    pub fn open(iface: &str, queue: u32) -> Result<XdpSocket, String> {
        match Self::open_with(iface, queue, SocketConfig::XDP_BIND_ZEROCOPY) {
            Ok(s) => Ok(s),
            Err(zc) => Self::open_with(iface, queue, SocketConfig::XDP_BIND_COPY)
                .map_err(|copy| format!("{copy} (zero-copy: {zc})")),
        }
    }

    fn open_with(iface: &str, queue: u32, mode: u16) -> Result<XdpSocket, String> {
        let err = |what: &str| {
            let what = what.to_owned();
            move |e: xdpilone::Errno| format!("{iface} queue {queue}: {what}: {e}")
        };
        let area = Area::new((FRAMES * FRAME_SIZE) as usize)?;
        let config = UmemConfig {
            fill_size: RING,
            complete_size: RING,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        let slice = NonNull::slice_from_raw_parts(area.ptr, area.len);
        // SAFETY: the area is page aligned (mmap), FRAMES * FRAME_SIZE long, and outlives the
        // Umem (dropped before it, by field order).
        let umem = unsafe { Umem::new(config, slice) }.map_err(err("registering packet memory"))?;
        let mut info = IfInfo::invalid();
        let name = CString::new(iface).map_err(|_| format!("{iface:?}: not an interface name"))?;
        info.from_name(&name).map_err(err("no such interface"))?;
        info.set_queue(queue);
        let sock = Socket::with_shared(&info, &umem).map_err(err("AF_XDP socket"))?;
        let device = umem
            .fq_cq(&sock)
            .map_err(err("fill and completion rings"))?;
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: NonZeroU32::new(RING),
                    tx_size: NonZeroU32::new(RING),
                    bind_flags: SocketConfig::XDP_BIND_NEED_WAKEUP | mode,
                },
            )
            .map_err(err("receive and transmit rings"))?;
        let rx = user.map_rx().map_err(err("mapping the receive ring"))?;
        let tx = user.map_tx().map_err(err("mapping the transmit ring"))?;
        umem.bind(&user).map_err(err("binding"))?;
        let mut s = XdpSocket {
            device,
            rx,
            tx,
            user,
            _umem: umem,
            area,
            free: (0..FRAMES).map(|i| u64::from(i * FRAME_SIZE)).collect(),
            received: Vec::with_capacity(RING as usize),
            zero_copy: mode == SocketConfig::XDP_BIND_ZEROCOPY,
            tx_ring_full: 0,
        };
        s.refill();
        Ok(s)
    }

    /// The kernel's drop counts for this socket since it opened: [`crate::metrics::XDP_DROP_REASONS`]
    /// but the last (the transmit ring is ours to count).
    pub fn kernel_drops(&self) -> Option<[u64; 3]> {
        let s = self.user.statistics_v2().ok()?;
        Some([s.rx_dropped, s.rx_ring_full, s.rx_fill_ring_empty_descs])
    }

    /// The descriptor the XDP program's socket map takes.
    pub fn fd(&self) -> RawFd {
        self.user.as_raw_fd()
    }

    /// Gives the kernel free frames to receive into. (A reservation is served from what the
    /// ring last showed free, possibly less than asked: asking again looks afresh.)
    fn refill(&mut self) {
        let mut given = 0;
        while given < self.free.len() {
            let mut w = self.device.fill((self.free.len() - given) as u32);
            let n = w.insert(self.free[given..].iter().copied()) as usize;
            w.commit();
            if n == 0 {
                break;
            }
            given += n;
        }
        self.free.drain(..given);
    }

    /// Takes back the frames the kernel has sent.
    fn reclaim(&mut self) {
        loop {
            let before = self.free.len();
            let mut c = self.device.complete(RING);
            while let Some(addr) = c.read() {
                self.free.push(addr);
            }
            c.release();
            if self.free.len() == before {
                break;
            }
        }
    }

    /// The frame at `addr`, to the end of its chunk: the room a reply written over it has.
    fn frame(&mut self, addr: u64) -> &mut [u8] {
        let chunk_end = (addr / u64::from(FRAME_SIZE) + 1) * u64::from(FRAME_SIZE);
        assert!(
            chunk_end as usize <= self.area.len,
            "a descriptor outside the packet memory"
        );
        // SAFETY: in bounds (checked), and the frame is ours: the kernel handed it over on the
        // receive ring and gets it back only through the transmit or fill ring, after this
        // borrow ends.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.area.ptr.as_ptr().add(addr as usize),
                (chunk_end - addr) as usize,
            )
        }
    }

    /// Receives a batch, hands each frame and its length to `handle`, which writes a reply over
    /// it and returns the reply's length (or `None`), and sends the replies. Waits up to
    /// `timeout_ms` when nothing arrives. Returns how many frames came in.
    pub fn turn(
        &mut self,
        batch: u32,
        timeout_ms: i32,
        mut handle: impl FnMut(&mut [u8], usize) -> Option<usize>,
        replies: &mut Vec<XdpDesc>,
    ) -> u32 {
        self.reclaim();
        self.refill();
        replies.clear();
        let mut received = std::mem::take(&mut self.received);
        received.clear();
        // As for filling: read again while a read returns what it was asked for.
        loop {
            let want = batch - received.len() as u32;
            let mut r = self.rx.receive(want);
            let before = received.len();
            while let Some(desc) = r.read() {
                received.push(desc);
            }
            r.release();
            if received.len() == before || received.len() as u32 >= batch {
                break;
            }
        }
        let n = received.len() as u32;
        if n == 0 {
            self.received = received;
            self.wait(timeout_ms);
            return 0;
        }
        for desc in &received {
            let frame = self.frame(desc.addr);
            match handle(frame, desc.len as usize) {
                Some(len) => replies.push(XdpDesc {
                    addr: desc.addr,
                    len: len as u32,
                    options: 0,
                }),
                None => self.free.push(desc.addr),
            }
        }
        // As for filling: asked again until the ring is really full.
        let mut sent = 0;
        while sent < replies.len() {
            let mut w = self.tx.transmit((replies.len() - sent) as u32);
            let n = w.insert(replies[sent..].iter().copied()) as usize;
            w.commit();
            if n == 0 {
                break;
            }
            sent += n;
        }
        // A full transmit ring drops the rest, as a full socket buffer would.
        self.free.extend(replies[sent..].iter().map(|d| d.addr));
        self.tx_ring_full += (replies.len() - sent) as u64;
        if sent > 0 && self.tx.needs_wakeup() {
            self.tx.wake();
        }
        self.received = received;
        n
    }

    /// Sleeps until a frame arrives (or `timeout_ms`), waking the kernel if it asked to be.
    fn wait(&mut self, timeout_ms: i32) {
        if self.tx.needs_wakeup() && self.tx.pending() > 0 {
            self.tx.wake();
        }
        let mut p = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, timeout_ms) };
    }
}
