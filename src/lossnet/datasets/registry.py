"""The dataset registry: where every dataset of the four benchmarks comes from, how it is checked,
and where its files land under the data root.

Pure data (no network, no heavy imports). Every URL and checksum records where it came from
(``Remote.checksum_source``, ``Dataset.sources_note``); a file without a published checksum says
so, and its SHA-256 is recorded at download time in the part's completion marker instead
(``lossnet data verify`` re-checks against that record). ``docs/data.md`` renders the same table.

Vocabulary:

* a **dataset** (``bapps``, ``svhn``...) has one folder under the data root;
* a **part** is the unit that is fetched, verified and marked complete on its own (``2afc-val``,
  ``train``...); ``Part.dest`` is the folder (relative to the dataset folder) its files land in;
* a **remote** is one file on the web (archive, ``.mat``, PNG or an index page), with its mirrors
  in the order they are tried.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Remote", "Part", "Dataset", "KaggleSource", "DATASETS", "get_dataset", "dataset_names"]

# Where the checksums below came from (quoted in Remote.checksum_source).
_TV_SVHN = "published MD5 in torchvision.datasets.SVHN.split_list (torchvision 0.28.0)"
_TV_STL = "published MD5 in torchvision.datasets.STL10.tgz_md5 (torchvision 0.28.0)"
_SELFEXSR_COMMIT = "8f6dd8c1d20cb7e8792a7177b4f6fd677633f598"
_SELFEXSR = (
    f"SHA-256 of the git blob at jbhuang0604/SelfExSR@{_SELFEXSR_COMMIT[:12]} (content addressed by git; "
    "identical to the project's ../shared/data/sr copy)"
)
NO_CHECKSUM = "none published; SHA-256 recorded at download in the completion marker"


@dataclass(frozen=True)
class Remote:
    """One downloadable file.

    Attributes:
        filename: local file name (in the download folder, or the final name for plain files).
        urls: mirrors, tried in order.
        size: exact size in bytes when known, else None.
        approx_size: a size estimate (bytes) used for the free-space check and ``data list``.
        md5 / sha256: published (or pinned, see ``checksum_source``) checksums; None when none exists.
        checksum_source: where the checksum came from, or :data:`NO_CHECKSUM`.
    """

    filename: str
    urls: tuple[str, ...]
    size: int | None = None
    approx_size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    checksum_source: str = NO_CHECKSUM

    @property
    def known_hash(self) -> str | None:
        """The checksum in pooch's ``alg:hex`` form (SHA-256 preferred), or None."""
        if self.sha256:
            return f"sha256:{self.sha256}"
        if self.md5:
            return f"md5:{self.md5}"
        return None

    @property
    def nbytes(self) -> int:
        """Exact size, else the estimate, else 0."""
        return int(self.size or self.approx_size or 0)


@dataclass(frozen=True)
class Part:
    """A unit fetched, verified and marked complete on its own.

    Attributes:
        name: part name (``train``, ``2afc-val``...).
        kind: ``"archive"`` (tar/zip unpacked safely), ``"file"`` (each remote is a final file), or
            ``"listing"`` (each remote is an index page; every linked file with one of
            ``listing_ext`` is downloaded into the subfolder named by ``Remote.filename``).
        remotes: the files to download.
        dest: folder, relative to the dataset folder, that receives the part's files.
        members: archive parts: only members under this prefix are unpacked, with the prefix removed.
        path: what :func:`lossnet.datasets.locate` returns for this part, relative to the dataset folder.
        extracted_size: bytes on disk after unpacking (estimate; archives only).
        default: fetched when ``lossnet data fetch NAME`` names no part.
        subset_ok: a zip whose members can be fetched one by one (``--subset``).
        paper_subset: the number of members the paper's preset uses (``--subset paper``).
        subset_seed_offset: the subset of this part is drawn with ``seed + offset`` (the superres benchmark
            draws its validation images with ``seed + 1``).
        member_md5: published MD5s of unpacked files (relative to ``dest``), checked after unpacking.
        listing_ext: file suffixes taken from an index page.
        aliases: other accepted spellings of ``name``.
    """

    name: str
    kind: str
    remotes: tuple[Remote, ...]
    dest: str = ""
    members: str = ""
    path: str = ""
    extracted_size: int = 0
    default: bool = True
    subset_ok: bool = False
    paper_subset: int | None = None
    subset_seed_offset: int = 0
    member_md5: tuple[tuple[str, str], ...] = ()
    listing_ext: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def download_size(self) -> int:
        return sum(r.nbytes for r in self.remotes)


@dataclass(frozen=True)
class KaggleSource:
    """An optional Kaggle mirror (``pip install lossnet[kaggle]`` + API credentials)."""

    slug: str
    members: tuple[tuple[str, str], ...]  # (part name, member prefix inside the Kaggle zip)
    approx_size: int
    note: str = ""

    def prefix(self, part: str) -> str | None:
        return dict(self.members).get(part)


@dataclass(frozen=True)
class Dataset:
    """A dataset of the benchmarks: its parts, terms and the on-disk layout the benchmark reads."""

    name: str
    title: str
    benchmark: str
    parts: tuple[Part, ...]
    license: str
    homepage: str
    layout: str
    sources_note: str = ""
    kaggle: KaggleSource | None = None
    aliases: tuple[str, ...] = field(default=())

    def part(self, name: str) -> Part:
        from lossnet.errors import DataError

        for p in self.parts:
            if name == p.name or name in p.aliases:
                return p
        raise DataError(f"dataset {self.name!r} has no part {name!r}; parts: {', '.join(p.name for p in self.parts)}")

    @property
    def default_parts(self) -> tuple[Part, ...]:
        return tuple(p for p in self.parts if p.default)


# --------------------------------------------------------------------------------------------
# BAPPS (Zhang et al. 2018): the LPIPS authors' download script.
# --------------------------------------------------------------------------------------------
_LPIPS_S3 = "https://perceptual-similarity.s3.us-west-2.amazonaws.com/dataset/"
_LPIPS_OLD = "https://people.eecs.berkeley.edu/~rich.zhang/projects/2018_perceptual/dataset/"
_LPIPS_SRC = (
    "URLs: richzhang/PerceptualSimilarity scripts/download_dataset.sh (S3 since commit 907f235, Oct 2023; "
    "the Berkeley URLs before). Sizes: its README (2AFC train 5.3 GB, 2AFC val 1.1 GB, JND val 0.2 GB)."
)

BAPPS = Dataset(
    name="bapps",
    title="Berkeley-Adobe Perceptual Patch Similarity (BAPPS)",
    benchmark="similarity",
    parts=(
        Part(
            "2afc-val",
            "archive",
            (
                Remote(
                    "twoafc_val.tar.gz",
                    (_LPIPS_S3 + "twoafc_val.tar.gz", _LPIPS_OLD + "twoafc_val.tar.gz"),
                    approx_size=1_100_000_000,
                ),
            ),
            dest="2afc/val",
            members="val/",
            path="",
            extracted_size=1_200_000_000,
            aliases=("2afc/val", "val"),
        ),
        Part(
            "jnd-val",
            "archive",
            (Remote("jnd.tar.gz", (_LPIPS_S3 + "jnd.tar.gz", _LPIPS_OLD + "jnd.tar.gz"), approx_size=200_000_000),),
            dest="jnd/val",
            members="jnd/val/",
            path="",
            extracted_size=220_000_000,
            aliases=("jnd/val", "jnd"),
        ),
        Part(
            "2afc-train",
            "archive",
            (
                Remote(
                    "twoafc_train.tar.gz",
                    (_LPIPS_S3 + "twoafc_train.tar.gz", _LPIPS_OLD + "twoafc_train.tar.gz"),
                    approx_size=5_300_000_000,
                ),
            ),
            dest="2afc/train",
            members="train/",
            path="",
            extracted_size=5_800_000_000,
            default=False,
            aliases=("2afc/train", "train"),
        ),
    ),
    license="LPIPS repository: BSD-2-Clause; no separate dataset licence published (research use; cite Zhang et al. 2018)",
    homepage="https://github.com/richzhang/PerceptualSimilarity",
    layout="bapps/2afc/{train,val}/<subset>/{ref,p0,p1,judge}/, bapps/jnd/val/<subset>/{p0,p1,same}/",
    sources_note=_LPIPS_SRC + " No checksums are published.",
    kaggle=KaggleSource(
        slug="chaitanyakohli678/berkeley-adobe-perceptual-patch-similarity-bapps",
        members=(
            ("2afc-val", "dataset/2afc/val/"),
            ("jnd-val", "dataset/jnd/val/"),
            ("2afc-train", "dataset/2afc/train/"),
        ),
        approx_size=6_600_000_000,
        note="the Kaggle mirror used by the authors' dataset_collector.py (bapps_collector); one zip with dataset/2afc and dataset/jnd",
    ),
)

# --------------------------------------------------------------------------------------------
# SVHN and STL-10: torchvision's dataset classes.
# --------------------------------------------------------------------------------------------
_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"


def _svhn(split: str, md5: str, approx: int) -> Part:
    name = f"{split}_32x32.mat"
    return Part(
        split,
        "file",
        (Remote(name, (_SVHN_URL + name,), approx_size=approx, md5=md5, checksum_source=_TV_SVHN),),
        path=name,
    )


SVHN = Dataset(
    name="svhn",
    title="Street View House Numbers (SVHN), cropped digits",
    benchmark="autoencoder",
    parts=(
        _svhn("train", "e26dedcc434d2e4c54c9b2d4a06d8373", 182_000_000),
        _svhn("test", "eb5a983be6a315427106f1b164d9cef3", 64_300_000),
        _svhn("extra", "a93ce644f1a588dc4d68dda5feec44a7", 1_330_000_000),
    ),
    license="non-commercial use only (SVHN website); cite Netzer et al. 2011",
    homepage="http://ufldl.stanford.edu/housenumbers/",
    layout="svhn/{train,test,extra}_32x32.mat (MATLAB v5: X uint8 32x32x3xN, y 1..10)",
    sources_note="URLs and MD5s: torchvision.datasets.SVHN.split_list (the authors' collector uses torchvision). Sizes approximate.",
)

_STL_MD5 = (  # torchvision.datasets.STL10.train_list / test_list
    ("train_X.bin", "918c2871b30a85fa023e0c44e0bee87f"),
    ("train_y.bin", "5a34089d4802c674881badbb80307741"),
    ("unlabeled_X.bin", "5242ba1fed5e4be9e1e742405eb56ca4"),
    ("test_X.bin", "7f263ba9f9e0b06b93213547f721ac82"),
    ("test_y.bin", "36f9794fa4beb8a2c72628de14fa638e"),
)
STL10 = Dataset(
    name="stl10",
    title="STL-10, binary version",
    benchmark="autoencoder",
    parts=(
        Part(
            "binary",
            "archive",
            (
                Remote(
                    "stl10_binary.tar.gz",
                    ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",),
                    approx_size=2_640_000_000,
                    md5="91f7769df0f17e558f3565bffb0c7dfb",
                    checksum_source=_TV_STL,
                ),
            ),
            dest="",
            members="stl10_binary/",
            path="",
            # 5,000 + 8,000 + 100,000 images of 3x96x96 bytes, plus labels and two text files.
            extracted_size=113_000 * 27_648 + 20_000,
            member_md5=_STL_MD5,
            aliases=("all",),
        ),
    ),
    license="no licence stated; images are from ImageNet (research use); cite Coates et al. 2011",
    homepage="https://cs.stanford.edu/~acoates/stl10/",
    layout="stl10/{train,test,unlabeled}_X.bin, {train,test}_y.bin (+ class_names.txt, fold_indices.txt)",
    sources_note="URL and MD5s (archive and the five .bin files): torchvision.datasets.STL10. Archive size approximate.",
)

# --------------------------------------------------------------------------------------------
# MS-COCO 2014 (images only): cocodataset.org download page; the authors' collector.
# --------------------------------------------------------------------------------------------
COCO2014 = Dataset(
    name="coco2014",
    title="MS-COCO 2014 images (train2014, val2014)",
    benchmark="superres",
    parts=(
        Part(
            "train",
            "archive",
            (
                Remote(
                    "train2014.zip", ("http://images.cocodataset.org/zips/train2014.zip",), approx_size=13_510_000_000
                ),
            ),
            dest="train2014",
            members="train2014/",
            path="train2014",
            extracted_size=13_600_000_000,
            subset_ok=True,
            paper_subset=10_000,
            aliases=("train2014",),
        ),
        Part(
            "val",
            "archive",
            (Remote("val2014.zip", ("http://images.cocodataset.org/zips/val2014.zip",), approx_size=6_650_000_000),),
            dest="val2014",
            members="val2014/",
            path="val2014",
            extracted_size=6_700_000_000,
            subset_ok=True,
            paper_subset=100,
            subset_seed_offset=1,
            aliases=("val2014",),
        ),
    ),
    license="images: Flickr terms of use (per-image licences); annotations CC BY 4.0 (cocodataset.org terms of use)",
    homepage="https://cocodataset.org/#download",
    layout="coco2014/train2014/COCO_train2014_*.jpg, coco2014/val2014/COCO_val2014_*.jpg (full, or a seeded --subset)",
    sources_note=(
        "URLs: cocodataset.org download page and the authors' dataset_collector.py (coco_collector). "
        "No checksums are published; --subset checks each member's CRC-32 from the zip's central directory."
    ),
)

# --------------------------------------------------------------------------------------------
# Massachusetts Roads (Mnih 2013): per-split index pages, as in the authors' collector.
# --------------------------------------------------------------------------------------------
_MRD = "https://www.cs.toronto.edu/~vmnih/data/mass_roads/"
_MRD_TILE = 9_000_000  # estimate per tile: 1500x1500 RGB sat + 1500x1500 map, uncompressed TIFF


def _mrd(split: str, tiles: int) -> Part:
    return Part(
        split,
        "listing",
        (
            Remote("sat", (f"{_MRD}{split}/sat/index.html",), approx_size=tiles * 6_750_000),
            Remote("map", (f"{_MRD}{split}/map/index.html",), approx_size=tiles * 2_250_000),
        ),
        dest=split,
        path=split,
        listing_ext=(".tif", ".tiff"),
        aliases=(("val",) if split == "valid" else ()),
    )


MRD = Dataset(
    name="mrd",
    title="Massachusetts Roads Dataset (Mnih 2013)",
    benchmark="roads",
    parts=(_mrd("train", 1108), _mrd("valid", 14), _mrd("test", 49)),
    license="no licence stated (research use); cite Mnih, PhD thesis, University of Toronto, 2013",
    homepage="https://www.cs.toronto.edu/~vmnih/data/",
    layout="mrd/{train,valid,test}/{sat,map}/<tile>.tif[f]",
    sources_note=(
        "Index pages: the authors' dataset_collector.py (mrd_collector), one per split and folder; every linked "
        ".tif/.tiff is downloaded. Tile counts 1108/14/49 (Mnih 2013); sizes are estimates. No checksums are published."
    ),
)

# --------------------------------------------------------------------------------------------
# BSDS300 (BSD100 = its test split): Berkeley; the authors' collector and pytorch/examples.
# --------------------------------------------------------------------------------------------
_BSDS = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/"
_BSDS_REMOTE = Remote(
    "BSDS300-images.tgz",
    (_BSDS + "bsds/BSDS300-images.tgz", _BSDS + "grouping/segbench/BSDS300-images.tgz"),
    approx_size=22_000_000,
)
BSDS300 = Dataset(
    name="bsds300",
    title="Berkeley Segmentation Dataset 300, images (BSD100 = the 100 test images)",
    benchmark="superres",
    parts=(
        Part(
            "test",
            "archive",
            (_BSDS_REMOTE,),
            dest="images/test",
            members="BSDS300/images/test/",
            path="images/test",
            extracted_size=8_000_000,
            aliases=("bsd100",),
        ),
        Part(
            "train",
            "archive",
            (_BSDS_REMOTE,),
            dest="images/train",
            members="BSDS300/images/train/",
            path="images/train",
            extracted_size=16_000_000,
        ),
    ),
    license="non-commercial research and educational use (Berkeley BSDS terms); cite Martin et al. 2001",
    homepage="https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/",
    layout="bsds300/images/test/*.jpg (100, = BSD100), bsds300/images/train/*.jpg (200)",
    sources_note=(
        "URL: the authors' dataset_collector.py (bsds_collector) and pytorch/examples super_resolution; "
        "the segbench path is a second Berkeley location of that file name, used by other projects. No checksum is published."
    ),
)


# --------------------------------------------------------------------------------------------
# Set5, Set14 and BSD100 (SR crops): SelfExSR repository, image_SRF_2 HR PNGs (the authors' collector).
# --------------------------------------------------------------------------------------------
def _selfexsr(folder: str, files: tuple[tuple[str, int, str], ...]) -> tuple[Remote, ...]:
    out = []
    for name, size, sha in files:
        src = f"data/{folder}/image_SRF_2/{name[:-4]}_SRF_2_HR.png"
        urls = (
            f"https://raw.githubusercontent.com/jbhuang0604/SelfExSR/{_SELFEXSR_COMMIT}/{src}",
            f"https://raw.githubusercontent.com/jbhuang0604/SelfExSR/master/{src}",
            f"https://github.com/jbhuang0604/SelfExSR/blob/master/{src}?raw=true",
        )
        out.append(Remote(name, urls, size=size, sha256=sha, checksum_source=_SELFEXSR))
    return tuple(out)


_SET5 = (
    ("img_001.png", 371264, "b7f0633258c4dc1a1ef57f26ef2e2db414b64c170cb7c618730cb2f2aae3c7ed"),
    ("img_002.png", 120453, "6f9d47ea7f70bc8a98f33d483fc7ffe684e79c9c8398321006ab8093fce5e4ef"),
    ("img_003.png", 127529, "a58f6334af41127d8de5ea64e36ad174623a689c1bd5c4100aee20738b93a944"),
    ("img_004.png", 113787, "30bd282537e4660651d5f668252353a66723c301ccba541a699af053269e9eb3"),
    ("img_005.png", 118848, "653e3aa5cbc70487e38e31260ba2d42588d575e267e23951ea66157adc3285e6"),
)
_SET14 = (
    ("img_001.png", 531037, "d60c263b88e82f70dccb0112c8e1e5f66ca8be6581d88ceabb353fe4c88feada"),
    ("img_002.png", 821015, "282a29a2d82defbda925c01875b765c4c5c33f85f2f5655400a771eb7241d247"),
    ("img_003.png", 162038, "ecf4c67660202decfbabf5898ef56a2cd1a88393d48dfc9208d4467ac9a76713"),
    ("img_004.png", 154469, "04ae5ef38fc38ec1db20df2842c07226d7684da312fd3bd4cd0bd0401d9f62b0"),
    ("img_005.png", 192368, "ca96cdc294c81b1810dab4ba73c3675049cfd127d090a4719ff21f6a9d96b4bd"),
    ("img_006.png", 110826, "bd3710be9a2d9efdfa254ac2282dd7eaec0079d7bcd43fcb256517afebbfee58"),
    ("img_007.png", 348592, "d72e12d6eb8144ad2420fe91af19bcb51256ac17b8221fa1c8f89f2a3d6b50c0"),
    ("img_008.png", 130720, "c49e96409094b390704ec1eeab85a0f1c7660249ca8826ffe468c046758e3ab9"),
    ("img_009.png", 374782, "469af940770cb99f92abc82a597388fe07b5eaf7a557c9e20c0094efc2870e01"),
    ("img_010.png", 318631, "e62db478accc42370e463ac95f93e691debe751196f5927494cce1bae22df754"),
    ("img_011.png", 618686, "44509e5c39eb0a0af5b0cf887ee53194a1f6830d125cff763275e13544ed4614"),
    ("img_012.png", 507582, "f727b04ddea2c2ae07784ee9e9dd9db5c6035121d93de933eac3a9a8ad33a0a7"),
    ("img_013.png", 269141, "2743edf18619b152bcff0da9383110b4257531a096369a8dcf7e879e43c1e03e"),
    ("img_014.png", 441802, "6795235d3a79bbb80f951b199752d2e64882f649c86efe3d94695020f425c11d"),
)
_BSD100 = (
    ("img_001.png", 336569, "7fd498aea863ce138e3a925c8861521559c29e6f8fa704b3906b50202fe76a14"),
    ("img_002.png", 202118, "a0822ecc2a6420853d974db40101fa82284f23069af3461ec49e2c7857306543"),
    ("img_003.png", 233585, "17fd9fc69aa8651b44b695b7b981985390524eff296becb821e76103ed3e2f9a"),
    ("img_004.png", 234460, "401c48779f024bb60c523376d651e4e1918087f681158a3f2c3034217d15b642"),
    ("img_005.png", 285857, "ccc8a37f1f15d9f586e04e75e0ea4b10d14ce1bebaae0a3cee1a4f1615c77039"),
    ("img_006.png", 186848, "f3ceb995c17b19d7e743962f4560bb13ee95b280a3cc0b5b5057f9b735bd3575"),
    ("img_007.png", 293861, "985d1047cbfe001cba55f3829e035318055a3e641d06337c886be8799cc9f0c5"),
    ("img_008.png", 340890, "71b079a90b388337af9597b05f33b18020c8a159e19e58777281ac06bb37f486"),
    ("img_009.png", 261720, "d9a766de053769dfd96bb8e7e74e49480c2aff10cba1db7ea2ead2298aa88179"),
    ("img_010.png", 247672, "a726e1d0a081cab34f78eb70779b455b11333217bc257d1b9a45cd2ca615892c"),
    ("img_011.png", 257652, "0913abf5990150602e9e983e50e57d5433d28293ba4163bf4f1e38cd13ed39fd"),
    ("img_012.png", 309076, "772bfc1ec0c296bf0303a37182c7fb96d400e8b618aed6021d6737f3481c4346"),
    ("img_013.png", 254213, "baf42b1f56359893028418a62179edc14b1af7e57d7b7600a8534d9cdd50a594"),
    ("img_014.png", 226144, "92af1073d8850933916a1e1db5962d60f61faca2756177a206d7f169927fef40"),
    ("img_015.png", 295667, "486c8da44e353e2b10c130e74cdaa0ce5d3ca8c4d28e2bd358947325e47e8bc2"),
    ("img_016.png", 314154, "907e98538e4d72388da13b56536f1bc39e581ec6301892963c5e05962615ebe4"),
    ("img_017.png", 187235, "eeb85fa1d6d01a5166a8c00456ed086e75f60f16b70fc124d6a2802ffad2b2b0"),
    ("img_018.png", 181276, "be6ed105e3a6241341be250fd340c498aff3e72e641f8c4030914b18621bff79"),
    ("img_019.png", 283343, "55d16192446a0fa81911030c03dad40e8af32b02e03cd4d55d5ac82397f7f680"),
    ("img_020.png", 266353, "082c74619c873518b328cd0e3d37f1ff42cb566e096dd8598e72093878698282"),
    ("img_021.png", 333969, "b1f5fd5866b6e713a018fa8a3cc2c244f9a0eafdaf51c8a5b834251691c8c40c"),
    ("img_022.png", 320370, "1f8bb75090538c062573d8b53dc96adb2beaa40ec23d428b32dfb209600edbcd"),
    ("img_023.png", 335294, "66eef5d8f59320f4f385631f158a41493bd44aeeb9144df0b574dd1d10493e8d"),
    ("img_024.png", 272267, "d2b65524c7f16a2df096e6eefd26dbed6f5accdcbe5ea9be122aca55221dffda"),
    ("img_025.png", 285828, "95b363495c89a684d616e95803399f8cfa079417226c17577616acc1c1206661"),
    ("img_026.png", 216207, "907db27545b08ec31bc2c075872646d97eaf6c557e0b593a9f08fbffb3bfc14c"),
    ("img_027.png", 293317, "720bd843595fbbda9956795dae700af3ffeb1aa262f6ae9acc1ee47a63510c2a"),
    ("img_028.png", 253332, "bb53abd88bfa368ff433ae627c6edada32ff6870ecbba3ee4e2856386bfac8ee"),
    ("img_029.png", 170289, "0b1be023568260fe394192e4265cf964996e7d69752d8acbc83a0aef34f9f4ff"),
    ("img_030.png", 350798, "8743f2eff0582708c04eacdc33f5ae7997ba2d2b772b23596d15c0f9ac732a8f"),
    ("img_031.png", 262723, "af3b535eea034788704f3b7b73889bcb4301e3c5fda1084449e3f7d2e6507aa0"),
    ("img_032.png", 387110, "94c03b25a8c0b5ad6acad4f310d3b90e96f0b87429a1043c76814ab2d8f28819"),
    ("img_033.png", 328791, "ca24bde4284d45e687e30a9e216f1fbb683e5f5268c1c9f6e72d2cc823cc488c"),
    ("img_034.png", 251665, "4b673e310f00164c472eb6af9ce9be0c69be528111d2c84f17f6abaffbd5615c"),
    ("img_035.png", 199303, "4f915a6789990360e607574a699bf5c745f6be00995c42d9ce8f666e5ee6b9f0"),
    ("img_036.png", 291467, "e2804656b894907f69409d959c7ad9b7082863e1dba1cbf2480a47e2567a1542"),
    ("img_037.png", 261257, "3d01036b56a2c5568c86102652b6dd5393b9ec594f8694199f1b64781e37735a"),
    ("img_038.png", 269054, "6bd8a222c2907a81f4e4ac85e829aa0b708ac2606d9cd4d43e483c4af08d8ed2"),
    ("img_039.png", 288638, "261ec4fffc9f86471d09fe6c5725a2009011ca78b3e20830bcfb0c8213d4dea8"),
    ("img_040.png", 235763, "260e30a5a0699c8ab48688ffec150c65387f1d81b74796f4079c5000f1a26fb5"),
    ("img_041.png", 258881, "28338f72b0879df7600801b15abdd6fda845532d501ce5ecd7cba4828b483ba4"),
    ("img_042.png", 285671, "f43a5d6ac751573cc56a45c2c08b12dbcf8513bd26538dad9992401418386860"),
    ("img_043.png", 230825, "cdb34dd67b495133cc529e565a58d3eda344d183f566fe9b20f1418ca60ad32a"),
    ("img_044.png", 251066, "153a8f41da46876b511c84c42985a2c1b6303fcf6ad7ccdef095617849fc6ca6"),
    ("img_045.png", 290197, "f81276801cfdb3af0b4de9cdd687833e304cf9bd413f7b858e8911fea25b2a7d"),
    ("img_046.png", 175848, "33b616ddb521ad8872a1df6e2202dd5475174f628ed7c820abd437d5b1ba6022"),
    ("img_047.png", 337477, "afc4f5e2f36217d9617d361053a387c44b00d04d301bf2b6917a6b40c0405a6d"),
    ("img_048.png", 326683, "f20d70d5abc588ccb491a1fb02336501211f1e83ca1d53bb811bc83aa0fcc730"),
    ("img_049.png", 250221, "9a5993292b0b271a4a4f25c9697a06b87ed93cae142f299f1a90ce201a09a8ef"),
    ("img_050.png", 207384, "d2b23c29f36e52836e7ea1675e8337aa7ef6bed3449d4984629a9b5f7e60c275"),
    ("img_051.png", 304954, "3d9eccf0cd4a1c8ea1fdbf001bb86d69cdf522be6462b96d5602560e90bcc74c"),
    ("img_052.png", 288958, "31a873a38005e724e24fd86423bd52d59691e2986f6823a09debdb4a8055b050"),
    ("img_053.png", 207362, "d408407774b0db39439a6aea8dc1b89a005e53461284bc3b1ee863a6b731ea4f"),
    ("img_054.png", 223049, "b2d45892b040dd36df14a3bcc9e41ad076996533254e99daa61bb4cc8a0da611"),
    ("img_055.png", 276363, "78def3f8d8f01d3c3050df70cbdf3b3108cb2ae3a66f3ce8346b5309de0e8df8"),
    ("img_056.png", 314951, "9fde769cd60e675e0f73970bf5c0f5635838c6148007760945a28964f5613705"),
    ("img_057.png", 382917, "19c471d38bc38ba8e0d931425885d5bbc2f18a964d6270d4f07003789436c2b9"),
    ("img_058.png", 259017, "b5be1da5ff78596fe9703d96a769254f34e0ae807f3f4beda4f1b43451aa0281"),
    ("img_059.png", 236134, "01a5a152eedd8c476f917a96ab6a98b91c4f590dec795993669f057fe4c429d6"),
    ("img_060.png", 239302, "8b8a140cfd1dae00ce28ec5ae9c809f043dc94b5d12ad6b8aecfded1fb718c52"),
    ("img_061.png", 224469, "8ff369dd63c621da2740cd31832e6d23bd7dd4528693c1595efab60482bd821b"),
    ("img_062.png", 225382, "5419c5d31f784c1f13d34e8ba070fccc5aee35b0c69386a4ab24b4d46b3696fd"),
    ("img_063.png", 181857, "bf6467ca6100156291797e32035dd8c059a9c9b2a1a113ad1860b699bd9d955a"),
    ("img_064.png", 324938, "f01f3b149f86bd1e3d39f42cc1a4f11ef78a66923e897d076e4bed7e43ad7fe3"),
    ("img_065.png", 323906, "da911176b478af4eef9734734ae1431a1e0ffd57beaffb4dffd1f7b3170e690e"),
    ("img_066.png", 274501, "6da90d012c13e7ace07baf87e5fcaf2be4aa97675de53a7288b5f60a4a671faa"),
    ("img_067.png", 126949, "7e15b58bec2a3e0d70a2f612db59ed409998a93e89b8246286c687e46c2e7968"),
    ("img_068.png", 371294, "bbf3e18c8400a3fffb1b08de966dcc2a5edb324ed3f500ec77cf37522cd58dec"),
    ("img_069.png", 290187, "ee29f45a2646118ee5525a4f44cefdf985824bb725578258ea97fa5964452489"),
    ("img_070.png", 250998, "89f6fb32071c5db7fd3d16120189bca8afafb550b85f323ad674608e8fc71e6d"),
    ("img_071.png", 238207, "1fdae4597c3e44bca948ab27dd9c84d87929ac80553b165d1e419eb8e10c7b38"),
    ("img_072.png", 327618, "558057f626b89baba6dcb3e634ab616a024efdab34b4e69771776039b9f8d3c0"),
    ("img_073.png", 317011, "4f58d5e4ce64a9e9d40387bd401e4bcd8656284686540f00f413f399822f104e"),
    ("img_074.png", 288570, "e369ee45133f35f731068fc52eb1ff254bf159320ee3972042d1695af0ef7fd4"),
    ("img_075.png", 289508, "df4bd547e645fc6fd7b664a7ba2f350164f83f8067c6a9c988b1ef26561b2337"),
    ("img_076.png", 233318, "e472234351316249a478a1f9020052ffb44ce6cc48d352f0743c12906ba2952d"),
    ("img_077.png", 343498, "fc471eebb0065d4960a40bc79ae46970230a5fbde32b6b584d840d685fe5b8e8"),
    ("img_078.png", 226624, "19eabed3f635ed701e1c1005808f347f33f2451434da4ab2405a2dba2ffb905f"),
    ("img_079.png", 164490, "c93f4800ea5dd609d1db27bc694444ebeb9fafe00076ed7671e24820e4ebde04"),
    ("img_080.png", 215875, "1bd5f3962a2b6c1c1a17d7e8277aaaa897e7203be412526a1c6a54767d16280e"),
    ("img_081.png", 157272, "45d57d3b1a122322a85da73ced83a3709d6edb43fa9e8f11a0a939001983f113"),
    ("img_082.png", 266071, "bc0e1a20e408e1e0d8d27a721bb0623342bcaaef035ad1c013e98fc9fc00254c"),
    ("img_083.png", 359205, "fde276e65676d7769ec3bcbcb050da9689359d0f4212790d8d1effea1cec323a"),
    ("img_084.png", 318639, "fcff9179fb9dc6e2ae60e5dcba24aa7a35c6c6dea709be6168f137966823cc64"),
    ("img_085.png", 252027, "ff0a1300074bc6c29eca9b2a2eacb86a4344df8544c560c89d439198539bca7c"),
    ("img_086.png", 326836, "d67c229cf14be9655f6dd20ce39cb4c467e99e1a9f3a0f562ab02f72a98f9b77"),
    ("img_087.png", 276022, "56b2b008ab5975baa273f9c74a7488b7f2758c78c112be7cf8c9726bbb53377f"),
    ("img_088.png", 254666, "e4fdc767eafac2b4e83459d0b4e592a90318114b695ede749a9cf15d227eeb04"),
    ("img_089.png", 327214, "3b3db2d49f0e54dd658d531fe772bdaba0f30a539e12b0ef643861170109c984"),
    ("img_090.png", 305349, "c5dfd25885c441f3a134b6dbb505e4dc4eb826bc6af21b16d066196a1d1cbe96"),
    ("img_091.png", 275899, "cd585ad704918cd3d4446b9f271c61407db81ac5ec1c914b87dff237c008439e"),
    ("img_092.png", 233880, "9a96eec5dc0cc6c1da7381d1e825f169c1b3db61a50b736607def53e29693fd5"),
    ("img_093.png", 235230, "c0a7bf311d40a1ffeb7609171b9aa4a913d2e50cbd953e32f45ced17b02ccb60"),
    ("img_094.png", 301223, "27db5bf8ddee449e33374fdedaa0a1f75ea493e3acbd4684efc41223b9b30039"),
    ("img_095.png", 266241, "61340edb9e531b26da626aedb1372febd3234ee8b596dca4d144b9814a19ca46"),
    ("img_096.png", 365276, "573ae5b7fe45ed3a4868cb9be5ed99a963f2bf7c05725136bb10ad8d67cf46b8"),
    ("img_097.png", 326218, "3e1527957eec618934b9e7969015c5fd878f4dd7b503c5b08053702881183b81"),
    ("img_098.png", 288693, "e3d2dea931110714308af73769074964240a3bd321a20e78b3802cd8a5d0c6e3"),
    ("img_099.png", 291784, "4171bec2fd4d50161db621d0fa4d95b94a9361f569b6d7ce3a058e354c4b58ba"),
    ("img_100.png", 296068, "6a24c754372668f2a6ae4560a82609bee16fc305f824e02acb55a588d5dcfade"),
)

_SELFEXSR_NOTE = (
    f"URLs: the authors' dataset_collector.py (set_collector: SelfExSR data/<set>/image_SRF_2/*_HR.png), pinned to commit "
    f"{_SELFEXSR_COMMIT[:12]} first. SHA-256s computed from the git objects of that commit."
)
SET5 = Dataset(
    name="set5",
    title="Set5 (HR PNGs of the SelfExSR repository, image_SRF_2)",
    benchmark="superres",
    parts=(Part("images", "file", _selfexsr("Set5", _SET5), path="", aliases=("all",)),),
    license="research benchmark images, no licence stated; cite Bevilacqua et al. 2012",
    homepage="https://github.com/jbhuang0604/SelfExSR",
    layout="set5/img_001.png ... img_005.png",
    sources_note=_SELFEXSR_NOTE,
)
SET14 = Dataset(
    name="set14",
    title="Set14 (HR PNGs of the SelfExSR repository, image_SRF_2)",
    benchmark="superres",
    parts=(Part("images", "file", _selfexsr("Set14", _SET14), path="", aliases=("all",)),),
    license="research benchmark images, no licence stated; cite Zeyde et al. 2010",
    homepage="https://github.com/jbhuang0604/SelfExSR",
    layout="set14/img_001.png ... img_014.png",
    sources_note=_SELFEXSR_NOTE,
)
BSD100 = Dataset(
    name="bsd100",
    title="BSD100 as SR benchmark crops (HR PNGs of the SelfExSR repository, image_SRF_2)",
    benchmark="superres",
    parts=(Part("images", "file", _selfexsr("BSD100", _BSD100), path="", aliases=("all",)),),
    license="BSDS300 test images (Berkeley terms: non-commercial research and educational use)",
    homepage="https://github.com/jbhuang0604/SelfExSR",
    layout="bsd100/img_001.png ... img_100.png",
    sources_note=(
        _SELFEXSR_NOTE
        + " The same 100 images as bsds300/test, cropped for the x2 factor; identical to ../shared/data/sr/bsd100. "
        "The authors used bsds300/test (JPEG) instead."
    ),
)

#: Every dataset, by name, in ``lossnet data list`` order.
DATASETS: dict[str, Dataset] = {d.name: d for d in (BAPPS, COCO2014, BSDS300, SET5, SET14, BSD100, MRD, SVHN, STL10)}


def dataset_names() -> list[str]:
    return list(DATASETS)


def get_dataset(name: str) -> Dataset:
    """The registry entry of ``name`` (case-insensitive).

    Raises:
        DataError: unknown name (the message lists the known ones).
    """
    from lossnet.errors import DataError

    key = name.strip().lower()
    if key in DATASETS:
        return DATASETS[key]
    for d in DATASETS.values():
        if key in d.aliases:
            return d
    raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
