//! ExaBGP's text API: the commands that announce, drain and withdraw a VIP's route, the lines
//! written to ExaBGP (our stdout), and the shutdown it announces on our stdin.

use std::io::Write as _;

use crate::config::{parse_community, Config, DrainMethod, Vip};
use crate::state::Route;

/// The ExaBGP command that makes `vip`'s route `route` (None: nothing to say, already so).
pub fn command(cfg: &Config, vip: &Vip, route: Route) -> String {
    let prefix = vip.prefix;
    let nh = &vip.next_hop;
    match route {
        Route::Withdrawn => format!("withdraw route {prefix} next-hop {nh}"),
        Route::Announced | Route::Draining => {
            let draining = route == Route::Draining;
            let med = if draining && cfg.drain.method == DrainMethod::Med {
                cfg.drain.med
            } else {
                vip.med
            };
            let mut communities: Vec<String> = vip
                .communities
                .iter()
                .filter_map(|c| parse_community(c))
                .map(|(a, b)| format!("{a}:{b}"))
                .collect();
            if draining && cfg.drain.method == DrainMethod::GracefulShutdown {
                communities.push("65535:0".into());
            }
            let mut line = format!("announce route {prefix} next-hop {nh} med {med}");
            if !communities.is_empty() {
                line.push_str(&format!(" community [{}]", communities.join(" ")));
            }
            if draining && cfg.drain.method == DrainMethod::Prepend {
                let asn = cfg.local_as.expect("checked with the config");
                let path = vec![asn.to_string(); cfg.drain.prepend as usize];
                line.push_str(&format!(" as-path [{}]", path.join(" ")));
            }
            line
        }
    }
}

/// Whether a line from ExaBGP announces its shutdown: `shutdown`, or ExaBGP 4.2's
/// `shutdown <pid> <ppid>`.
pub(crate) fn is_shutdown(line: &str) -> bool {
    let mut words = line.split_whitespace();
    words.next() == Some("shutdown") && words.all(|w| w.bytes().all(|b| b.is_ascii_digit()))
}

pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // ExaBGP reads line by line; a write error means it is gone, and stdin's EOF ends us.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(method: &str) -> Config {
        toml::from_str(&format!(
            "pop = \"ams\"\nlocal_as = 65001\n[[vips]]\nprefix = \"192.0.2.10/32\"\nmed = 50\n\
             communities = [\"65001:7\"]\ncheck = {{ kind = \"tcp\", addr = \"127.0.0.1:1\" }}\n\
             [drain]\nmethod = \"{method}\"\nmed = 9000\nprepend = 2\n"
        ))
        .unwrap()
    }

    #[test]
    fn exabgp_shutdown_in_both_spellings() {
        assert!(is_shutdown("shutdown"));
        assert!(is_shutdown("shutdown 4242 1"));
        assert!(is_shutdown("  shutdown 4242 1\r"));
        assert!(!is_shutdown("done"));
        assert!(!is_shutdown("shutdownx"));
        assert!(!is_shutdown("shutdown now please"));
    }

    #[test]
    fn commands_for_every_route_and_drain_method() {
        let c = cfg("graceful-shutdown");
        let v = &c.vips[0];
        assert_eq!(
            command(&c, v, Route::Announced),
            "announce route 192.0.2.10/32 next-hop self med 50 community [65001:7]"
        );
        assert_eq!(
            command(&c, v, Route::Draining),
            "announce route 192.0.2.10/32 next-hop self med 50 community [65001:7 65535:0]"
        );
        assert_eq!(
            command(&c, v, Route::Withdrawn),
            "withdraw route 192.0.2.10/32 next-hop self"
        );
        let c = cfg("med");
        assert_eq!(
            command(&c, &c.vips[0], Route::Draining),
            "announce route 192.0.2.10/32 next-hop self med 9000 community [65001:7]"
        );
        let c = cfg("prepend");
        assert_eq!(
            command(&c, &c.vips[0], Route::Draining),
            "announce route 192.0.2.10/32 next-hop self med 50 community [65001:7] as-path [65001 65001]"
        );
    }
}
