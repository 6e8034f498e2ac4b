//! The manual: a page per command in section 1, generated from the same definitions as
//! `--help` (clap_mangen), with the sections operators look for (FILES, ENVIRONMENT, EXIT
//! STATUS, EXAMPLES, SEE ALSO), and a page per config file in section 5, rendered from the
//! docs that describe it (docs/config.md and the config sections of docs/beacon.md,
//! docs/internal-zones.md and docs/bgp.md), so the man pages and the docs cannot disagree.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap_mangen::roff::{bold, italic, roman, Inline, Roff};

/// The config files, each with its page name, what it configures, where the package puts it,
/// the commands that read it, and the Markdown it is rendered from: `(doc, level-2 headings
/// whose sections make the page; empty: the whole file)`.
struct ConfigPage {
    name: &'static str,
    what: &'static str,
    path: &'static str,
    commands: &'static [&'static str],
    doc: &'static str,
    sections: &'static [&'static str],
}

const CONFIG_PAGES: [ConfigPage; 4] = [
    ConfigPage {
        name: "geodns.toml",
        what: "the configuration of the geodns DNS server",
        path: "/etc/geodns/geodns.toml",
        commands: &["geodns-serve", "geodns-check", "geodns-mapgen"],
        doc: include_str!("../docs/config.md"),
        sections: &[],
    },
    ConfigPage {
        name: "geodns-beacon.toml",
        what: "the configuration of the geodns beacon collector",
        path: "/etc/geodns/beacon.toml",
        commands: &["geodns-beacon"],
        doc: include_str!("../docs/beacon.md"),
        sections: &["The collector"],
    },
    ConfigPage {
        name: "geodns-presenter.toml",
        what: "the configuration of the geodns internal-zone presenter",
        path: "/etc/geodns/presenter.toml",
        commands: &["geodns-presenter", "geodns-publish"],
        doc: include_str!("../docs/internal-zones.md"),
        sections: &["The presenter"],
    },
    ConfigPage {
        name: "geodns-announce.toml",
        what: "the configuration of geodns announce, the ExaBGP health checker",
        path: "/etc/geodns/announce.toml",
        commands: &["geodns-announce"],
        doc: include_str!("../docs/bgp.md"),
        sections: &["Config", "Behaviour"],
    },
];

/// Examples per command page (by its name), as `(what, command line)`.
const EXAMPLES: &[(&str, &[(&str, &str)])] = &[
    (
        "geodns",
        &[
            ("Serve the packaged config", "geodns serve -c /etc/geodns/geodns.toml"),
            ("Check a config before reloading", "geodns check -c /etc/geodns/geodns.toml && systemctl reload geodns"),
        ],
    ),
    (
        "geodns-serve",
        &[
            ("Serve, logging every query (costly)", "RUST_LOG=info,geodns::query=debug geodns serve -c /etc/geodns/geodns.toml"),
            ("Reload config, zones and map without dropping a query", "systemctl reload geodns"),
        ],
    ),
    (
        "geodns-check",
        &[("Check what serve would load", "geodns check -c /etc/geodns/geodns.toml")],
    ),
    (
        "geodns-beacon",
        &[("Run the collector", "geodns beacon -c /etc/geodns/beacon.toml")],
    ),
    (
        "geodns-mapgen",
        &[
            ("Build a map from the last 7 days, gated against the one serving", "geodns mapgen -c /etc/geodns/geodns.toml --logs /srv/beacon --days 7 --out new.arrow --previous /var/lib/geodns/map.arrow --html report.html"),
            ("Then serve it", "cp new.arrow /var/lib/geodns/map.arrow && systemctl reload geodns"),
        ],
    ),
    (
        "geodns-map-explain",
        &[("Why is this address sent where it is", "geodns map explain /var/lib/geodns/map.arrow 198.51.100.7")],
    ),
    (
        "geodns-map-lookup",
        &[("Look up many addresses", "cut -f1 addresses.txt | geodns map lookup map.arrow -")],
    ),
    (
        "geodns-register",
        &[("Register this host until stopped", "geodns register --zookeeper zk1:2181 --name host1.prn1.internal.example --address 10.1.2.3 --service web:prn1:8080 --password-file /etc/geodns/zk-robot.password")],
    ),
    (
        "geodns-presenter",
        &[("Run the presenter", "geodns presenter -c /etc/geodns/presenter.toml")],
    ),
    (
        "geodns-publish",
        &[("Check, then publish a reviewed zone", "geodns publish -c /etc/geodns/presenter.toml --zone internal.example --check internal.zone && geodns publish -c /etc/geodns/presenter.toml --zone internal.example internal.zone")],
    ),
    (
        "geodns-keygen",
        &[("A presenter's signing key", "geodns keygen --out /etc/geodns/presenter.key")],
    ),
    (
        "geodns-zk-init",
        &[("Set up the tree, a robot identity and a PoP identity", "geodns zk init --zookeeper zk1:2181 --password-file /etc/geodns/zk-admin.password --robot robot-prn1=prn1.internal.example --announce announce-ams=ams")],
    ),
    (
        "geodns-announce",
        &[("As an ExaBGP API process (exabgp.conf)", "process geodns { run /usr/bin/geodns announce -c /etc/geodns/announce.toml; encoder text; }")],
    ),
    (
        "geodns-logs-compact",
        &[("Merge closed days' small files", "geodns logs compact /srv/beacon")],
    ),
    (
        "geodns-simulate",
        &[("A million simulated users' logs, for trying mapgen", "geodns simulate --users 1000000 --logs-only /tmp/logs")],
    ),
];

/// Files a command reads or writes, by page name: `(path, what)`.
fn files(page: &str) -> Vec<(&'static str, &'static str)> {
    let server = ("/etc/geodns/geodns.toml", "the server's config (geodns.toml(5)); in a checkout of the repository the default is data/geodns.toml");
    match page {
        "geodns" | "geodns-serve" | "geodns-check" => vec![
            server,
            ("/var/lib/geodns", "the service's state: the probe log, the internal-zone snapshot cache, reserve files"),
        ],
        "geodns-beacon" => vec![("/etc/geodns/beacon.toml", "the collector's config (geodns-beacon.toml(5))")],
        "geodns-presenter" | "geodns-publish" => vec![("/etc/geodns/presenter.toml", "the presenter's config (geodns-presenter.toml(5))")],
        "geodns-announce" => vec![("/etc/geodns/announce.toml", "the announce config (geodns-announce.toml(5))")],
        "geodns-mapgen" => vec![server, ("data/beacon-logs", "the default log root (dns_probe/ and rtt_report/ Parquet files)")],
        _ => Vec::new(),
    }
}

/// Writes every page into `dir` (`geodns.1`, `geodns-<command>.1`, ..., `<config>.5`);
/// returns their paths.
pub fn write_all(cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    let mut stack = vec![cmd];
    while let Some(c) = stack.pop() {
        stack.extend(c.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let man = clap_mangen::Man::new(c.clone());
        let path = dir.join(man.get_filename());
        let mut f = std::fs::File::create(&path)?;
        command_page(&man, &c, &mut f)?;
        f.flush()?;
        out.push(path);
    }
    for page in &CONFIG_PAGES {
        let path = dir.join(format!("{}.5", page.name));
        std::fs::write(&path, config_page(page))?;
        out.push(path);
    }
    Ok(out)
}

/// The top-level page alone (`geodns manpage` without `--dir`).
pub fn write_top(cmd: clap::Command, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    command_page(&clap_mangen::Man::new(cmd.clone()), &cmd, w)
}

fn command_page(
    man: &clap_mangen::Man,
    cmd: &clap::Command,
    w: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_owned();
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(w)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(w)?;
    }
    let mut r = Roff::new();
    section(&mut r, "FILES");
    let fs = files(&name);
    if fs.is_empty() {
        r.text([roman("None but those named on the command line.")]);
    }
    for (path, what) in fs {
        r.control("TP", []);
        r.text([italic(path)]);
        r.text([roman(what)]);
    }
    section(&mut r, "ENVIRONMENT");
    r.control("TP", []);
    r.text([bold("RUST_LOG")]);
    r.text([roman("The log level and targets (default info; e.g. info,geodns::query=debug logs every query of geodns serve). Logs go to standard error, as text or, with --log-json, one JSON object per line.")]);
    if name == "geodns-serve" || name == "geodns" {
        r.control("TP", []);
        r.text([bold("NOTIFY_SOCKET")]);
        r.text([roman("Set by systemd (Type=notify): the server says READY=1 once its data is loaded and every socket is bound, and STOPPING=1 when it begins to stop.")]);
    }
    section(&mut r, "EXIT STATUS");
    r.text([roman("0 on success. 1 when the command fails: the message on standard error names the file, line and key at fault, and a bad new config, map or snapshot is refused while the last good one keeps serving. 2 on a usage error (an unknown option or a bad value).")]);
    section(&mut r, "EXAMPLES");
    let examples = EXAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[][..], |(_, e)| e);
    if examples.is_empty() {
        r.text([roman(format!("{} --help", name.replacen('-', " ", 2)))]);
    }
    for (what, line) in examples {
        r.control("TP", []);
        r.text([roman(*what)]);
        r.text([bold(*line)]);
    }
    section(&mut r, "SEE ALSO");
    let mut see: Vec<String> = Vec::new();
    if name != "geodns" {
        see.push("geodns(1)".into());
    }
    see.extend(
        CONFIG_PAGES
            .iter()
            .filter(|p| name == "geodns" || p.commands.contains(&name.as_str()))
            .map(|p| format!("{}(5)", p.name)),
    );
    see.push("the docs in /usr/share/doc/geodns".into());
    r.text([roman(see.join(", "))]);
    r.to_writer(w)
}

fn section(r: &mut Roff, title: &str) {
    r.control("SH", [title]);
}

/// A config file's page: NAME, DESCRIPTION and the rest from its docs, FILES, EXAMPLES, SEE
/// ALSO.
fn config_page(page: &ConfigPage) -> String {
    let mut r = Roff::new();
    let upper = page.name.to_uppercase();
    r.control(
        "TH",
        [
            upper.as_str(),
            "5",
            "",
            concat!("geodns ", env!("CARGO_PKG_VERSION")),
            "geodns manual",
        ],
    );
    section(&mut r, "NAME");
    r.text([roman(format!("{} - {}", page.name, page.what))]);
    section(&mut r, "DESCRIPTION");
    r.text([roman(format!(
        "A TOML file, read by {}. Unknown keys are errors; an error names the file, line and key. What follows is the reference from the geodns docs.",
        page.commands
            .iter()
            .map(|c| format!("{c}(1)"))
            .collect::<Vec<_>>()
            .join(", ")
    ))]);
    markdown(&mut r, &sections_of(page.doc, page.sections));
    section(&mut r, "FILES");
    r.control("TP", []);
    r.text([italic(page.path)]);
    r.text([roman("Where the package and the service expect it.")]);
    section(&mut r, "EXAMPLES");
    r.text([roman(format!(
        "Check a change before it is used: geodns check -c {} (the server's), or start the command in the foreground and read its first log lines.",
        page.path
    ))]);
    section(&mut r, "SEE ALSO");
    r.text([roman(
        page.commands
            .iter()
            .map(|c| format!("{c}(1)"))
            .chain(["geodns(1)".to_owned()])
            .collect::<Vec<_>>()
            .join(", "),
    )]);
    r.render()
}

/// The level-2 sections of `doc` whose headings start with one of `headings` (each with its
/// subsections), or all of `doc` without its title when `headings` is empty.
fn sections_of(doc: &str, headings: &[&str]) -> String {
    if headings.is_empty() {
        return doc
            .lines()
            .skip_while(|l| l.starts_with("# ") || l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
    }
    let mut out = String::new();
    let mut taking = false;
    let mut fenced = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if !fenced && line.starts_with("## ") {
            taking = headings.iter().any(|h| line[3..].starts_with(h));
        }
        if taking {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Markdown (CommonMark with tables, as the docs are written) into the page: headings as
/// sections, paragraphs, lists, code blocks kept as they are, and each table row as a tagged
/// paragraph (its first cell, then the others with their column names), which reads well in a
/// terminal where a wide table would not.
fn markdown(r: &mut Roff, md: &str) {
    use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
    let mut line: Vec<Inline> = Vec::new();
    let (mut bold_on, mut italic_on) = (0, 0);
    let mut heading: Option<HeadingLevel> = None;
    let mut code_block = false;
    let mut table_head: Vec<String> = Vec::new();
    let mut cells: Vec<String> = Vec::new();
    let mut in_head = false;
    let mut cell = String::new();
    let mut in_cell = false;
    let flush = |r: &mut Roff, line: &mut Vec<Inline>| {
        if !line.is_empty() {
            r.text(std::mem::take(line));
        }
    };
    for event in Parser::new_ext(md, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                flush(r, &mut line);
                heading = Some(level);
            }
            Event::End(TagEnd::Heading(_)) => {
                let text: String = line
                    .drain(..)
                    .map(|i| match i {
                        Inline::Roman(s) | Inline::Bold(s) | Inline::Italic(s) => s,
                        Inline::LineBreak => " ".into(),
                    })
                    .collect();
                let macro_ = if heading <= Some(HeadingLevel::H2) {
                    "SH"
                } else {
                    "SS"
                };
                let title = if macro_ == "SH" {
                    text.to_uppercase()
                } else {
                    text
                };
                r.control(macro_, [title.as_str()]);
                heading = None;
            }
            Event::Start(Tag::Paragraph) => {
                flush(r, &mut line);
                if !in_cell {
                    r.control("PP", []);
                }
            }
            Event::End(TagEnd::Paragraph) => flush(r, &mut line),
            Event::Start(Tag::Item) => {
                flush(r, &mut line);
                r.control("IP", ["\\(bu", "2"]);
            }
            Event::End(TagEnd::Item) => flush(r, &mut line),
            Event::Start(Tag::CodeBlock(kind)) => {
                flush(r, &mut line);
                code_block = true;
                r.control("PP", []);
                r.control("nf", []);
                if let CodeBlockKind::Fenced(_) = kind {
                    r.control("RS", ["4"]);
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                code_block = false;
                r.control("RE", []);
                r.control("fi", []);
            }
            Event::Start(Tag::Table(_)) => {
                flush(r, &mut line);
                table_head.clear();
            }
            Event::Start(Tag::TableHead) => in_head = true,
            Event::End(TagEnd::TableHead) => {
                in_head = false;
                table_head = std::mem::take(&mut cells);
            }
            Event::Start(Tag::TableCell) => {
                in_cell = true;
                cell.clear();
            }
            Event::End(TagEnd::TableCell) => {
                in_cell = false;
                cells.push(std::mem::take(&mut cell));
            }
            Event::End(TagEnd::TableRow) if !in_head => {
                let row = std::mem::take(&mut cells);
                r.control("TP", []);
                r.text([bold(row.first().cloned().unwrap_or_default())]);
                let rest: Vec<String> = row
                    .iter()
                    .enumerate()
                    .skip(1)
                    .filter(|(_, c)| !c.trim().is_empty())
                    .map(|(i, c)| match table_head.get(i) {
                        Some(h) if !h.is_empty() => format!("{h}: {c}"),
                        _ => c.clone(),
                    })
                    .collect();
                r.text([roman(rest.join("; "))]);
            }
            Event::Start(Tag::Strong) => bold_on += 1,
            Event::End(TagEnd::Strong) => bold_on -= 1,
            Event::Start(Tag::Emphasis) => italic_on += 1,
            Event::End(TagEnd::Emphasis) => italic_on -= 1,
            Event::Text(t) if code_block => {
                for l in t.lines() {
                    r.text([roman(l)]);
                }
            }
            Event::Text(t) | Event::Html(t) | Event::InlineHtml(t) if in_cell => cell.push_str(&t),
            Event::Code(t) if in_cell => cell.push_str(&t),
            Event::Text(t) => line.push(if bold_on > 0 {
                bold(t.to_string())
            } else if italic_on > 0 {
                italic(t.to_string())
            } else {
                roman(t.to_string())
            }),
            Event::Code(t) => line.push(bold(t.to_string())),
            Event::SoftBreak if in_cell => cell.push(' '),
            Event::SoftBreak => line.push(roman(" ")),
            Event::HardBreak => line.push(Inline::LineBreak),
            _ => {}
        }
    }
    flush(r, &mut line);
}
