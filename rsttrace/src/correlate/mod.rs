//! `rsttrace correlate`: pairs the resets in traces taken at two or more ends of connections,
//! to tell a RST the peer sent from one forged in the path, and to find a RST lost on the way.
//! It reads the agents' JSON Lines only: no root, no BPF.
//!
//! Flow: `trace` (files → traces) → `pairing` (skew, matching, status; pure) → `annotate`
//! (updated records, counts) → `render`.
mod annotate;
mod pairing;
mod render;
mod trace;

use std::{
    fs::File,
    io::{self, BufReader, BufWriter, Write},
    net::IpAddr,
    path::PathBuf,
    time::Duration,
};

pub use trace::ReadError;

/// What `rsttrace correlate` runs with.
#[derive(Debug)]
pub struct Options {
    pub files: Vec<PathBuf>,
    /// `--nat X=Y`: X as one end sees it is Y as the other sees it.
    pub nat: Vec<(IpAddr, IpAddr)>,
    pub json: bool,
    /// How far apart two traces' clocks may be.
    pub window: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("correlate needs traces from two ends; the files hold {0}")]
    TooFewTraces(String),
    #[error("writing the output: {0}")]
    Write(#[from] io::Error),
}

impl Error {
    /// 2 for what the input is to blame for, as for a bad flag; 1 when writing failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Write(_) => 1,
            _ => 2,
        }
    }

    /// The reader went away (`| head`): not an error.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Write(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

pub fn run(options: &Options) -> Result<(), Error> {
    let mut out = BufWriter::new(io::stdout().lock());
    write(options, &mut out)?;
    out.flush()?;
    Ok(())
}

/// Reads the files, pairs their resets and writes the result to `out`.
fn write(options: &Options, out: &mut impl Write) -> Result<(), Error> {
    let mut reader = trace::Reader::default();
    for path in &options.files {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| ReadError::Open {
            file: name.clone(),
            source,
        })?;
        reader.read(&name, BufReader::new(file))?;
    }
    pair_and_render(reader, &options.nat, options.json, options.window, out)
}

/// [`run`] on files held in memory, written to `out`: the fuzz target's way in.
pub fn correlate_bytes(files: &[(&str, &[u8])], json: bool, out: &mut impl Write) -> Result<(), Error> {
    let mut reader = trace::Reader::default();
    for (name, bytes) in files {
        reader.read(name, *bytes)?;
    }
    pair_and_render(reader, &[], json, Duration::from_secs(5), out)
}

fn pair_and_render(reader: trace::Reader, nat: &[(IpAddr, IpAddr)], json: bool, window: Duration, out: &mut impl Write) -> Result<(), Error> {
    let traces = reader.finish()?;
    match traces.as_slice() {
        [] => {
            let none = "none (no record with an `instance`)".to_string();
            return Err(Error::TooFewTraces(none));
        }
        [one] => {
            let one = format!("one (host {}, instance {})", one.host, one.instance);
            return Err(Error::TooFewTraces(one));
        }
        _ => {}
    }
    let window = trace::Nanos::try_from(window.as_nanos()).unwrap_or(trace::Nanos::MAX);
    let correlation = pairing::correlate(&traces, &pairing::Nat::new(nat), window);
    let listing = annotate::Listing::new(&traces, &correlation);
    let summary = annotate::Summary::new(&traces, &correlation);
    if json {
        render::json(out, &listing, &summary)?;
    } else {
        render::table(out, &listing, &summary)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(json: bool, files: &[&str]) -> Result<String, Error> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/correlate");
        let options = Options {
            files: files
                .iter()
                .map(|f| PathBuf::from(format!("{dir}/{f}")))
                .collect(),
            nat: Vec::new(),
            json,
            window: Duration::from_secs(5),
        };
        let mut out = Vec::new();
        write(&options, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    /// docs/correlate.md shows what correlate prints for the files in testdata/correlate.
    #[test]
    fn the_documented_example_is_what_correlate_prints() {
        let doc = include_str!("../../../docs/correlate.md");
        let table = example(false, &["client1.json", "server1.json"]).unwrap();
        assert!(
            doc.contains(&table),
            "docs/correlate.md should show:\n{table}"
        );
        let json = example(true, &["client1.json", "server1.json"]).unwrap();
        let last = json.lines().last().unwrap();
        assert!(doc.contains(last), "docs/correlate.md should show:\n{last}");
    }

    #[test]
    fn one_trace_is_not_enough_and_a_missing_file_is_named() {
        let err = example(false, &["client1.json"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "correlate needs traces from two ends; the files hold one (host client1, instance 5f0c2a9e4b7d1360)"
        );
        assert_eq!(err.exit_code(), 2);
        let err = example(false, &["client1.json", "nowhere.json"])
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("nowhere.json: cannot read it: No such file or directory (os error 2)"),
            "{err}"
        );
    }
}
