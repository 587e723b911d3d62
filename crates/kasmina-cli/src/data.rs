//! The demo's data: the built-in synthetic table, a CSV of your own, and the real datasets
//! committed under `datasets/` (formats and splits in docs/data.md): the UCI handwritten digits
//! (8×8 images, for the CNN host) and *Pride and Prejudice* (bytes, for the transformer host).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Train and validation tensors.
#[derive(Debug, Clone)]
pub(crate) struct Dataset {
    pub(crate) train_x: Tensor,
    pub(crate) train_y: Tensor,
    pub(crate) val_x: Tensor,
    pub(crate) val_y: Tensor,
    pub(crate) features: usize,
    pub(crate) classes: usize,
    pub(crate) name: String,
}

impl Dataset {
    /// The built-in task: 8 uniform features in [-1, 1]; the class (4, balanced) is the
    /// quartile of the radius of the first five, `|x[..5]|` (thresholds 1.088, 1.278, 1.452).
    /// A radial boundary in five dimensions needs many ReLU units: the demo's 4-wide host is
    /// simply too small for it and plateaus around 50 %; a seed that adds capacity can lift it.
    pub(crate) fn synthetic(seed: u64, n: usize, device: &Device) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xDA7A);
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            let x: Vec<f32> = (0..8).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let r = x[..5].iter().map(|v| v * v).sum::<f32>().sqrt();
            let label = u32::from(r > 1.088) + u32::from(r > 1.278) + u32::from(r > 1.452);
            rows.push((x, label));
        }
        Self::from_rows(rows, 8, 4, "synthetic 5-d radial quartiles (8 features, 4 classes)", device)
    }

    /// A CSV file: numeric feature columns, the last column an integer class label (0-based).
    /// A header line is skipped when its first field is not a number. 80 % train, 20 % validation
    /// after a seeded shuffle.
    pub(crate) fn csv(path: &Path, seed: u64, device: &Device) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut rows = Vec::new();
        let mut width = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if i == 0 && fields[0].parse::<f32>().is_err() {
                continue;
            }
            if fields.len() < 2 {
                bail!("{}:{}: need at least one feature and a label", path.display(), i + 1);
            }
            let (label, feats) = fields.split_last().context("empty line")?;
            let x: Vec<f32> = feats
                .iter()
                .map(|f| {
                    f.parse::<f32>().with_context(|| format!("{}:{}: `{f}` is not a number", path.display(), i + 1))
                })
                .collect::<Result<_>>()?;
            if x.iter().any(|v| !v.is_finite()) {
                bail!("{}:{}: non-finite feature", path.display(), i + 1);
            }
            let label: u32 = label
                .parse()
                .with_context(|| format!("{}:{}: label `{label}` is not a class index", path.display(), i + 1))?;
            match width {
                None => width = Some(x.len()),
                Some(w) if w != x.len() => bail!("{}:{}: {} features, expected {w}", path.display(), i + 1, x.len()),
                _ => {}
            }
            rows.push((x, label));
        }
        let features = width.context("the CSV has no data rows")?;
        if rows.len() < 10 {
            bail!("{}: only {} rows; need at least 10", path.display(), rows.len());
        }
        let classes = rows.iter().map(|(_, l)| *l as usize).max().unwrap_or(0) + 1;
        let mut rng = StdRng::seed_from_u64(seed);
        rows.shuffle(&mut rng);
        Self::from_rows(rows, features, classes.max(2), &path.display().to_string(), device)
    }

    /// The first fifth of `rows` for validation, the rest for training.
    fn from_rows(
        rows: Vec<(Vec<f32>, u32)>,
        features: usize,
        classes: usize,
        name: &str,
        device: &Device,
    ) -> Result<Self> {
        let n_val = (rows.len() / 5).max(1);
        let (val, train) = rows.split_at(n_val);
        Self::from_split(train, val, features, classes, name, device)
    }

    /// A dataset from its training and validation rows.
    fn from_split(
        train: &[(Vec<f32>, u32)],
        val: &[(Vec<f32>, u32)],
        features: usize,
        classes: usize,
        name: &str,
        device: &Device,
    ) -> Result<Self> {
        let to_tensors = |part: &[(Vec<f32>, u32)]| -> Result<(Tensor, Tensor)> {
            let xs: Vec<f32> = part.iter().flat_map(|(x, _)| x.iter().copied()).collect();
            let ys: Vec<u32> = part.iter().map(|(_, y)| *y).collect();
            Ok((Tensor::from_vec(xs, (part.len(), features), device)?, Tensor::from_vec(ys, part.len(), device)?))
        };
        let (train_x, train_y) = to_tensors(train)?;
        let (val_x, val_y) = to_tensors(val)?;
        Ok(Self { train_x, train_y, val_x, val_y, features, classes, name: name.to_owned() })
    }

    /// Standardises every feature with the training split's mean and standard deviation (a
    /// constant feature is centred only).
    pub(crate) fn standardize(&mut self) -> Result<()> {
        let mean = self.train_x.mean_keepdim(0)?;
        let centred = self.train_x.broadcast_sub(&mean)?;
        let std = centred.sqr()?.mean_keepdim(0)?.sqrt()?;
        let ones = std.ones_like()?;
        let std = std.ge(1e-8)?.where_cond(&std, &ones)?;
        self.train_x = centred.broadcast_div(&std)?;
        self.val_x = self.val_x.broadcast_sub(&mean)?.broadcast_div(&std)?;
        Ok(())
    }

    /// Rows in the training split.
    pub(crate) fn train_len(&self) -> usize {
        self.train_x.dims()[0]
    }

    /// Keeps only the first `n` training and the first `n` validation rows (quick runs, tests).
    fn limit(&mut self, n: usize) -> Result<()> {
        let n = n.max(1);
        self.train_x = self.train_x.narrow(0, 0, n.min(self.train_len()))?;
        self.train_y = self.train_y.narrow(0, 0, n.min(self.train_len()))?;
        let n_val = n.min(self.val_x.dim(0)?);
        self.val_x = self.val_x.narrow(0, 0, n_val)?;
        self.val_y = self.val_y.narrow(0, 0, n_val)?;
        Ok(())
    }

    /// One epoch: every training row once, in an order shuffled with `rng`, in batches of
    /// `batch` (the last one shorter).
    fn batches(&self, rng: &mut StdRng, batch: usize) -> Result<Vec<(Tensor, Tensor)>> {
        let n = self.train_len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.shuffle(rng);
        order
            .chunks(batch.max(1))
            .map(|chunk| {
                let idx = Tensor::from_vec(chunk.to_vec(), chunk.len(), self.train_x.device())?;
                Ok((self.train_x.index_select(&idx, 0)?, self.train_y.index_select(&idx, 0)?))
            })
            .collect()
    }

    /// The UCI handwritten digits (`datasets/digits/digits.csv.gz`): 64 pixels per row, scaled
    /// from 0..16 to 0..1 (row-major 8×8, the CNN host reshapes them), 10 classes. The split is
    /// the documented one: rows 0..1437 for training, 1438..1796 for validation.
    pub(crate) fn digits(path: &Path, device: &Device) -> Result<Self> {
        let text = read_gz(path)?;
        let mut rows = Vec::with_capacity(DIGITS_ROWS);
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let at = || format!("{}:{}", path.display(), i + 1);
            let fields: Vec<u32> = line
                .split(',')
                .map(|f| f.trim().parse::<u32>().with_context(|| format!("{}: `{f}` is not an integer", at())))
                .collect::<Result<_>>()?;
            ensure!(fields.len() == DIGITS_PIXELS + 1, "{}: {} fields, expected 65", at(), fields.len());
            let (label, pixels) = fields.split_last().with_context(at)?;
            ensure!(*label < 10 && pixels.iter().all(|&p| p <= 16), "{}: a pixel above 16 or a label above 9", at());
            rows.push((pixels.iter().map(|&p| p as f32 / 16.0).collect(), *label));
        }
        ensure!(
            rows.len() == DIGITS_ROWS,
            "{}: {} rows, expected {DIGITS_ROWS} (docs/data.md; `python3 scripts/fetch_data.py` checks the file)",
            path.display(),
            rows.len()
        );
        let (train, val) = rows.split_at(DIGITS_TRAIN);
        Self::from_split(train, val, DIGITS_PIXELS, 10, "UCI handwritten digits (8×8 images, 10 classes)", device)
    }
}

/// The digits file, under the data directory.
pub(crate) const DIGITS_FILE: &str = "digits/digits.csv.gz";
/// The text file, under the data directory.
pub(crate) const TEXT_FILE: &str = "text/pride_and_prejudice.txt";
/// Rows of the digits file, the first [`DIGITS_TRAIN`] of them for training.
const DIGITS_ROWS: usize = 1797;
const DIGITS_TRAIN: usize = 1438;
/// Pixels of one digit (8×8).
pub(crate) const DIGITS_PIXELS: usize = kasmina_hosts::cnn::PIXELS;
/// Bytes of the text, the first [`TEXT_TRAIN`] of them for training (chapters 1–55).
const TEXT_BYTES: usize = 684_768;
const TEXT_TRAIN: usize = 616_809;
/// The text model's vocabulary: every byte value.
pub(crate) const VOCAB: usize = 256;

/// Reads a gzip-compressed text file.
fn read_gz(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::io::BufReader::new(file))
        .read_to_string(&mut text)
        .with_context(|| format!("decompressing {}", path.display()))?;
    Ok(text)
}

/// The path of `file` (relative to the data directory): under `dir` when given, otherwise under
/// the first `datasets/` that holds it, walking up from the current directory. A missing file
/// is an error that names the path looked for.
pub(crate) fn locate(dir: Option<&Path>, file: &str) -> Result<PathBuf> {
    const HINT: &str = "see docs/data.md; `python3 scripts/fetch_data.py --fetch --write` re-derives the datasets";
    if let Some(dir) = dir {
        let path = dir.join(file);
        ensure!(path.is_file(), "data file {} not found (--data-dir {}; {HINT})", path.display(), dir.display());
        return Ok(path);
    }
    let cwd = std::env::current_dir().context("reading the current directory")?;
    match cwd.ancestors().map(|a| a.join("datasets").join(file)).find(|p| p.is_file()) {
        Some(path) => Ok(path),
        None => bail!(
            "data file datasets/{file} not found in {} or any directory above it (pass --data-dir DIR; {HINT})",
            cwd.display()
        ),
    }
}

/// *Pride and Prejudice* as bytes, for next-byte prediction: training windows are drawn at random
/// offsets inside the training range; validation is a fixed set of windows spread evenly over
/// the held-out chapters.
#[derive(Debug, Clone)]
pub(crate) struct Text {
    bytes: Vec<u8>,
    /// Window length (the model's context).
    pub(crate) context: usize,
    /// Training windows per epoch.
    windows_per_epoch: usize,
    /// Validation inputs and targets, `[windows, context]` byte values.
    pub(crate) val_x: Tensor,
    pub(crate) val_y: Tensor,
    name: String,
}

impl Text {
    /// Reads the text at `path` (docs/data.md: training bytes `[0, 616809)`, validation the
    /// rest) and cuts `val_windows` fixed validation windows of `context` bytes.
    pub(crate) fn pride_and_prejudice(
        path: &Path,
        context: usize,
        windows_per_epoch: usize,
        val_windows: usize,
        device: &Device,
    ) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        ensure!(
            bytes.len() == TEXT_BYTES,
            "{}: {} bytes, expected {TEXT_BYTES} (docs/data.md; `python3 scripts/fetch_data.py` checks the file)",
            path.display(),
            bytes.len()
        );
        ensure!(context >= 2 && val_windows >= 1, "a context of at least 2 bytes and one validation window");
        let span = TEXT_BYTES - TEXT_TRAIN - context - 1;
        let step = span / val_windows.saturating_sub(1).max(1);
        let starts: Vec<usize> = (0..val_windows).map(|k| TEXT_TRAIN + (k * step).min(span)).collect();
        let (val_x, val_y) = windows(&bytes, &starts, context, device)?;
        let name = format!("Pride and Prejudice, next byte ({context}-byte context)");
        Ok(Self { bytes, context, windows_per_epoch: windows_per_epoch.max(1), val_x, val_y, name })
    }

    /// One epoch: `windows_per_epoch` training windows at offsets drawn from `rng`, in batches.
    fn batches(&self, rng: &mut StdRng, batch: usize) -> Result<Vec<(Tensor, Tensor)>> {
        let last = TEXT_TRAIN - self.context - 1;
        let starts: Vec<usize> = (0..self.windows_per_epoch).map(|_| rng.random_range(0..=last)).collect();
        starts.chunks(batch.max(1)).map(|c| windows(&self.bytes, c, self.context, self.val_x.device())).collect()
    }
}

/// Inputs `bytes[s..s+context]` and targets `bytes[s+1..s+context+1]` for each start `s`, as
/// `[starts, context]` tensors of byte values.
fn windows(bytes: &[u8], starts: &[usize], context: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let mut xs = Vec::with_capacity(starts.len() * context);
    let mut ys = Vec::with_capacity(starts.len() * context);
    for &s in starts {
        let window = bytes.get(s..s + context + 1).context("a text window past the end")?;
        xs.extend(window[..context].iter().map(|&b| u32::from(b)));
        ys.extend(window[1..].iter().map(|&b| u32::from(b)));
    }
    let shape = (starts.len(), context);
    Ok((Tensor::from_vec(xs, shape, device)?, Tensor::from_vec(ys, shape, device)?))
}

/// A session's data: rows of features with a class (the MLP's table, the digits), or a text.
#[derive(Debug, Clone)]
pub(crate) enum Data {
    /// Feature rows and class labels.
    Table(Dataset),
    /// Bytes of text.
    Text(Text),
}

impl Data {
    /// The shape a host needs to be built for this data.
    pub(crate) fn input(&self) -> kasmina_hosts::Input {
        match self {
            Self::Table(d) => kasmina_hosts::Input::Features { features: d.features, classes: d.classes },
            Self::Text(t) => kasmina_hosts::Input::Tokens { context: t.context, vocab: VOCAB },
        }
    }

    /// A human-readable description.
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Table(d) => &d.name,
            Self::Text(t) => &t.name,
        }
    }

    /// The validation inputs and targets (the whole validation set, one batch).
    pub(crate) fn val(&self) -> (&Tensor, &Tensor) {
        match self {
            Self::Table(d) => (&d.val_x, &d.val_y),
            Self::Text(t) => (&t.val_x, &t.val_y),
        }
    }

    /// Training steps in one epoch with batches of `batch`.
    pub(crate) fn steps_per_epoch(&self, batch: usize) -> usize {
        match self {
            Self::Table(d) => d.train_len().div_ceil(batch.max(1)),
            Self::Text(t) => t.windows_per_epoch.div_ceil(batch.max(1)),
        }
    }

    /// The batches of one epoch (the order, or the windows, drawn from `rng`).
    pub(crate) fn batches(&self, rng: &mut StdRng, batch: usize) -> Result<Vec<(Tensor, Tensor)>> {
        match self {
            Self::Table(d) => d.batches(rng, batch),
            Self::Text(t) => t.batches(rng, batch),
        }
    }

    /// Keeps at most `n` training rows (windows per epoch for a text) and `n` validation rows
    /// (windows): quick runs and tests.
    pub(crate) fn limit(&mut self, n: usize) -> Result<()> {
        match self {
            Self::Table(d) => d.limit(n),
            Self::Text(t) => {
                t.windows_per_epoch = t.windows_per_epoch.min(n.max(1));
                let n_val = n.max(1).min(t.val_x.dim(0)?);
                t.val_x = t.val_x.narrow(0, 0, n_val)?;
                t.val_y = t.val_y.narrow(0, 0, n_val)?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn windows_pair_each_byte_with_the_next() {
        let (x, y) = windows(b"abcdefg", &[0, 3], 3, &Device::Cpu).unwrap();
        assert_eq!(x.to_vec2::<u32>().unwrap(), [[97, 98, 99], [100, 101, 102]]);
        assert_eq!(y.to_vec2::<u32>().unwrap(), [[98, 99, 100], [101, 102, 103]]);
        assert!(windows(b"abcd", &[1], 3, &Device::Cpu).is_err(), "a window past the end");
    }

    #[test]
    fn a_malformed_digits_file_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("digits.csv.gz");
        let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), Default::default());
        let row: Vec<String> = (0..65).map(|i| (i % 10).to_string()).collect();
        writeln!(gz, "{}", row.join(",")).unwrap();
        writeln!(gz, "{}", row[..64].join(",")).unwrap();
        gz.finish().unwrap();
        let e = format!("{:#}", Dataset::digits(&path, &Device::Cpu).unwrap_err());
        assert!(e.contains("digits.csv.gz:2: 64 fields, expected 65"), "{e}");
    }

    #[test]
    fn a_missing_file_under_an_explicit_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = format!("{:#}", locate(Some(dir.path()), TEXT_FILE).unwrap_err());
        assert!(e.contains(&dir.path().join(TEXT_FILE).display().to_string()), "{e}");
    }

    #[test]
    fn limit_keeps_the_first_rows_of_each_split() {
        let rows: Vec<(Vec<f32>, u32)> = (0..20).map(|i| (vec![i as f32], i % 2)).collect();
        let mut data = Data::Table(Dataset::from_rows(rows, 1, 2, "t", &Device::Cpu).unwrap());
        data.limit(3).unwrap();
        assert_eq!(data.steps_per_epoch(2), 2);
        let (val_x, _) = data.val();
        assert_eq!(val_x.dims(), [3, 1]);
    }
}
