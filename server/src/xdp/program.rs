//! The XDP program (`program.bpf.c`, built by clang in build.rs), loaded and attached by aya:
//! which addresses and ports it takes (`TARGETS`), and the AF_XDP socket of each queue
//! (`SOCKETS`).

use std::net::SocketAddr;
use std::os::fd::RawFd;

use aya::maps::{HashMap, XskMap};
use aya::programs::{Xdp, XdpFlags};
use aya::Ebpf;

/// The program's object file, when clang was there to build it.
#[cfg(xdp_program)]
const OBJECT: Option<&[u8]> = Some(aya::include_bytes_aligned!(concat!(
    env!("OUT_DIR"),
    "/program.bpf.o"
)));
#[cfg(not(xdp_program))]
const OBJECT: Option<&[u8]> = None;

/// `e` with its causes (aya's own messages leave the OS error to the source), and what a
/// refusal for lack of privilege needs.
fn explain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut denied = false;
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(&format!(": {more}"));
        }
        denied |= c
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied);
        cause = c.source();
    }
    if denied {
        text.push_str(" (XDP needs CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW, or root)");
    }
    text
}

/// The object's XDP program, `geodns_xdp` in program.bpf.c.
fn xdp(ebpf: &mut Ebpf) -> Result<&mut Xdp, String> {
    ebpf.program_mut("geodns_xdp")
        .ok_or("the XDP program is missing")?
        .try_into()
        .map_err(|e| format!("geodns_xdp: {}", explain(&e)))
}

/// `struct target` of program.bpf.c: an address and port the program takes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Target {
    addr: [u8; 16],
    /// Network order.
    port: u16,
    family: u8,
    pad: u8,
}

// SAFETY: plain bytes with no padding (16 + 2 + 1 + 1), any value valid, as the map's key.
unsafe impl aya::Pod for Target {}

impl Target {
    fn of(addr: SocketAddr) -> Target {
        let mut t = Target {
            port: addr.port().to_be(),
            ..Target::default()
        };
        match addr {
            SocketAddr::V4(a) => {
                t.family = 4;
                t.addr[..4].copy_from_slice(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                t.family = 6;
                t.addr.copy_from_slice(&a.ip().octets());
            }
        }
        t
    }
}

/// The program loaded, its maps filled, attached once [`Program::attach`] succeeds; detached
/// when dropped (and by the kernel if the process dies: aya attaches through a link).
pub struct Program {
    ebpf: Ebpf,
    iface: String,
}

impl Program {
    /// Loads the program for `iface`, taking UDP to `targets` (an unspecified address: every
    /// address of its family, on that port).
    pub fn load(iface: &str, targets: &[SocketAddr]) -> Result<Program, String> {
        let object = OBJECT.ok_or(
            "this build has no XDP program (clang and libbpf-dev were missing when it was built)",
        )?;
        let mut ebpf =
            Ebpf::load(object).map_err(|e| format!("loading the XDP program: {}", explain(&e)))?;
        let mut map: HashMap<_, Target, u8> = HashMap::try_from(
            ebpf.map_mut("TARGETS")
                .ok_or("the XDP program has no TARGETS map")?,
        )
        .map_err(|e| format!("TARGETS: {}", explain(&e)))?;
        for &t in targets {
            map.insert(Target::of(t), 1, 0)
                .map_err(|e| format!("TARGETS: {}", explain(&e)))?;
        }
        xdp(&mut ebpf)?
            .load()
            .map_err(|e| format!("the kernel refused the XDP program: {}", explain(&e)))?;
        Ok(Program {
            ebpf,
            iface: iface.to_owned(),
        })
    }

    /// Sends what arrives on `queue` to the AF_XDP socket `fd`.
    pub fn add_socket(&mut self, queue: u32, fd: RawFd) -> Result<(), String> {
        let mut map = XskMap::try_from(
            self.ebpf
                .map_mut("SOCKETS")
                .ok_or("the XDP program has no SOCKETS map")?,
        )
        .map_err(|e| format!("SOCKETS: {}", explain(&e)))?;
        map.set(queue, fd, 0)
            .map_err(|e| format!("SOCKETS queue {queue}: {}", explain(&e)))
    }

    /// Attaches to the interface: in the driver if it can run XDP (native mode), else in the
    /// kernel's generic hook. Returns the mode.
    pub fn attach(&mut self) -> Result<&'static str, String> {
        let prog = xdp(&mut self.ebpf)?;
        match prog.attach(&self.iface, XdpFlags::DRV_MODE) {
            Ok(_) => Ok("native"),
            Err(native) => match prog.attach(&self.iface, XdpFlags::SKB_MODE) {
                Ok(_) => Ok("generic"),
                Err(generic) => Err(format!(
                    "attaching to {}: native: {}; generic: {}",
                    self.iface,
                    explain(&native),
                    explain(&generic)
                )),
            },
        }
    }
}
