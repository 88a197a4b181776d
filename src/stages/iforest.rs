//! An isolation forest (Liu, Ting and Zhou, 2008) over small feature vectors,
//! deterministic for a seed.
//!
//! Each tree isolates a subsample of the training vectors by random cuts: a
//! random feature, a cut drawn uniformly between the smallest and largest
//! value the node's samples have in it. Unusual points are isolated in few
//! cuts; the score is `2^(−E[path] / c(ψ))`, about 0.5 for ordinary points and
//! towards 1 for anomalies.
//!
//! One change to the textbook scoring: a point outside the range a node's
//! samples span in the cut's feature is what the textbook forest handles
//! worst (it follows the extreme training samples down and looks ordinary;
//! a 50-unit spike on a ±1 sine scored 0.58 against 0.49 for normal points).
//! Here the cut at such a node is taken to be drawn over the range *including
//! the point*, so it separates the point with probability
//! `out / (out + width)`, and the expected path length is computed in closed
//! form along the path. At the root the cut is taken in the feature the point
//! is farthest outside (each tree keeps its subsample's bounding box), so one
//! wild feature among several is not diluted by the others. Points inside
//! every range score exactly as in the textbook forest; a point far outside
//! is isolated at the root (score ≈ 0.93 with ψ = 256). On standard normal
//! features, 1 point in 10,000 scores above 0.745 and one 8 σ out in a single
//! feature 0.81.
//!
//! Features are standardised (mean, standard deviation of the training
//! vectors) before the trees are built, so nodes hold `f32` cuts. Only the
//! cuts are stored, 16 bytes each; a leaf is just the number of samples it
//! holds, kept in its parent (at most 255: both sides of a cut hold one).
//! A tree of ψ = 256 has about 150 cuts (2.4 kB), and all trees of a forest
//! share one allocation: 1,000 forests of 100 trees take about 250 MB.
//!
//! **Cost.** A forest is built once per channel, when training ends, and
//! never refitted: ~15 M instructions for 100 trees (ψ = 256), on the order
//! of a millisecond. Scoring walks eight trees side by side, one depth at a
//! time, and stops as soon as the paths so far plus the least the other
//! trees can add prove the point ordinary (`Forest::walk`): an ordinary
//! point walks about 38 of 100 trees, 7–8 cuts each. Which way a point goes
//! at a cut is a coin flip, so the walk selects instead of branching: some
//! 21,000 instructions a reading but 75 mispredicted branches instead of
//! 300, half the time of the branching walk (valgrind's branch simulator and
//! `benches/iforest.sh --channels 10`). With 1,000 channels the forests do
//! not fit in any cache and each cut waits on memory, which is why eight
//! walks go side by side; `benches/iforest.sh` measures both cases.

use crate::model::rng::Rng;

/// Features per vector.
pub const DIMS: usize = 3;
/// Subsample per tree (ψ in the paper).
pub const SUBSAMPLE: usize = 256;

/// A cut, in pre-order within its tree: an internal left child follows it.
#[derive(Debug, Clone, Copy)]
struct Node {
    split: f32,
    /// Range of the node's samples in `dim`.
    lo: f32,
    hi: f32,
    dim: u8,
    /// Which children are leaves: bit [`LEFT`] and bit [`RIGHT`].
    leaves: u8,
    /// The left and the right child. A leaf: the samples it holds. An
    /// internal left child: unused (it is the next node). An internal right
    /// child: its index in the tree.
    children: [u8; 2],
}

/// Index of the left child in [`Node::children`] (values below the cut).
const LEFT: usize = 0;
/// Index of the right child in [`Node::children`].
const RIGHT: usize = 1;

/// One tree: where its cuts start in [`Forest::nodes`]. A tree without a
/// cut (its samples were all equal) is one leaf of `root_leaf` samples.
#[derive(Debug, Clone, Copy)]
struct Tree {
    start: u32,
    root_leaf: Option<u16>,
}

/// Trees walked side by side when scoring: with many channels the forests
/// are not in any cache, and as many loads are in flight.
const LANES: usize = 8;
/// Trees whose paths are summed before the scorer checks whether it can
/// stop (a divisor of [`LANES`]). Scores are summed in this grouping.
const CHUNK: usize = 4;

#[derive(Debug, Clone)]
pub struct Forest {
    trees: Vec<Tree>,
    /// The cuts of every tree, one after the other.
    nodes: Vec<Node>,
    /// Per tree, the range of its subsample in every feature.
    boxes: Vec<[(f32, f32); DIMS]>,
    center: [f64; DIMS],
    scale: [f64; DIMS],
    /// Distance (standardised) below which a point outside a range counts
    /// as inside: rounding noise at the feature's level.
    noise: [f64; DIMS],
    /// c(ψ): the average path length of an unsuccessful search in a binary
    /// search tree of ψ keys, the normaliser of scores.
    norm: f64,
    /// The range every tree's subsample spans in every feature (the
    /// intersection of `boxes`): a point inside it is cut no earlier than
    /// at depth 2 in any tree.
    core: [(f64, f64); DIMS],
    /// Per k, the least the trees from the k-th on can add to a point's
    /// path: [outside `core`, inside it] (see [`Forest::walk`]).
    rest: Vec<[f64; 2]>,
}

/// The path length a leaf of `n` samples adds, c(n), as the tree keeps it
/// (`f32`); a table, since scoring needs one per tree.
fn leaf_paths() -> &'static [f32; SUBSAMPLE + 1] {
    static TABLE: std::sync::OnceLock<[f32; SUBSAMPLE + 1]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|n| c(n) as f32))
}

/// How a point was scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub score: f64,
    /// Mean expected number of cuts that isolated the point.
    pub path: f64,
    /// The mean path of an ordinary point, c(ψ).
    pub normal: f64,
}

/// Average path length of an unsuccessful BST search among `n` keys.
pub fn c(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        n => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
        }
    }
}

impl Forest {
    /// Builds `trees` trees over `samples` (at least two). The same samples,
    /// tree count and seed always give the same forest.
    pub fn build(samples: &[[f64; DIMS]], trees: usize, seed: u64) -> Forest {
        let n = samples.len().max(1);
        let mut center = [0.0; DIMS];
        let mut scale = [1.0; DIMS];
        let mut noise = [0.0; DIMS];
        for d in 0..DIMS {
            let mean = samples.iter().map(|s| s[d]).sum::<f64>() / n as f64;
            let var = samples.iter().map(|s| (s[d] - mean).powi(2)).sum::<f64>() / n as f64;
            let floor = 1e-9 * (1.0 + mean.abs());
            center[d] = mean;
            scale[d] = var.sqrt().max(floor);
            noise[d] = floor / scale[d];
        }
        let data: Vec<[f32; DIMS]> =
            samples.iter().map(|s| std::array::from_fn(|d| ((s[d] - center[d]) / scale[d]) as f32)).collect();
        let psi = data.len().min(SUBSAMPLE);
        let limit = (psi.max(2) as f64).log2().ceil() as usize;
        let mut rng = Rng(seed ^ 0x1f0e_57a5_3d1c_9b27);
        let mut idx: Vec<u32> = (0..data.len() as u32).collect();
        let mut boxes = Vec::with_capacity(trees.max(1));
        let mut nodes = Vec::new();
        // Per tree, the least its leaves add to a path: depth + c(samples).
        let mut shallowest = Vec::with_capacity(trees.max(1));
        let trees: Vec<Tree> = (0..trees.max(1))
            .map(|_| {
                // The first ψ entries of a partial Fisher–Yates shuffle.
                for i in 0..psi {
                    let j = i + (rng.next_u64() % (idx.len() - i) as u64) as usize;
                    idx.swap(i, j);
                }
                let mut sub: Vec<u32> = idx[..psi].to_vec();
                boxes.push(bounds(&data, &sub));
                let start = nodes.len();
                let mut grower =
                    Grower { data: &data, limit, rng: &mut rng, nodes: &mut nodes, start, shallowest: f64::INFINITY };
                let root_leaf = match grower.grow(&mut sub, 0) {
                    Grown::Leaf(n) => Some(n as u16),
                    Grown::Cut(_) => None,
                };
                shallowest.push(grower.shallowest);
                Tree { start: start as u32, root_leaf }
            })
            .collect();
        nodes.shrink_to_fit();
        let core = std::array::from_fn(|d| {
            let lo = boxes.iter().map(|b| f64::from(b[d].0)).fold(f64::NEG_INFINITY, f64::max);
            let hi = boxes.iter().map(|b| f64::from(b[d].1)).fold(f64::INFINITY, f64::min);
            (lo, hi)
        });
        let mut rest = vec![[0.0; 2]; trees.len() + 1];
        for k in (0..trees.len()).rev() {
            let least = shallowest[k];
            rest[k] = [rest[k + 1][0] + least.min(1.0), rest[k + 1][1] + least.min(2.0)];
        }
        Forest { trees, nodes, boxes, center, scale, noise, norm: c(psi), core, rest }
    }

    /// Scores one raw (not standardised) feature vector.
    #[cfg(test)]
    pub fn score(&self, x: &[f64; DIMS]) -> Scored {
        self.walk(x, f64::INFINITY).expect("without a limit every tree is walked")
    }

    /// Scores one raw feature vector if its score is above `threshold`.
    /// Most points are ordinary, and the trees walked so far tell: once
    /// their paths and the least the other trees can add come to more than
    /// an anomaly's could, the rest are not walked.
    pub fn score_above(&self, x: &[f64; DIMS], threshold: f64) -> Option<Scored> {
        // A score above `threshold` needs a mean path below this.
        let longest = if self.norm > 0.0 { -self.norm * threshold.log2() } else { f64::INFINITY };
        self.walk(x, longest).filter(|s| s.score > threshold)
    }

    /// Walks every tree, or stops (None) once the mean path is sure to be
    /// longer than `longest`.
    ///
    /// A tree adds at least its shallowest leaf (depth + c(samples)) or the
    /// depth of a cut that isolates the point: 1 at the root, 2 further down.
    /// A point inside every tree's box (`core`, nearly every ordinary
    /// point) is not isolated at the root: each tree left adds at least
    /// min(2, its shallowest leaf), and the walk stops after about a third
    /// of 100 trees where a bound of 0 needed 43.
    fn walk(&self, x: &[f64; DIMS], longest: f64) -> Option<Scored> {
        let z: [f64; DIMS] = std::array::from_fn(|d| (x[d] - self.center[d]) / self.scale[d]);
        let inside = usize::from(self.in_core(&z));
        // The margin keeps rounding out of the decision.
        let stop = longest * self.trees.len() as f64 * (1.0 + 1e-9);
        let mut total = 0.0;
        let mut walked = 0;
        for (trees, boxes) in self.trees.chunks(LANES).zip(self.boxes.chunks(LANES)) {
            let mut paths = [0.0; LANES];
            self.paths(trees, boxes, &z, &mut paths);
            // Summed per chunk, in tree order: the same bits however many
            // trees were walked side by side.
            for chunk in paths[..trees.len()].chunks(CHUNK) {
                total += chunk.iter().sum::<f64>();
                walked += chunk.len();
                if total + self.rest[walked][inside] > stop {
                    return None;
                }
            }
        }
        let path = total / self.trees.len() as f64;
        let score = if self.norm > 0.0 { 2f64.powf(-path / self.norm) } else { 0.5 };
        Some(Scored { score, path, normal: self.norm })
    }

    /// Whether `z` (standardised) lies inside every tree's box.
    fn in_core(&self, z: &[f64; DIMS]) -> bool {
        (0..DIMS).all(|d| self.core[d].0 <= z[d] && z[d] <= self.core[d].1)
    }

    /// The expected paths of `z` in up to [`LANES`] trees (module notes).
    /// Walking one tree is a chain of dependent loads; walking several side
    /// by side, one depth at a time, keeps that many loads in flight. A
    /// point inside the range of every node on its way has the textbook
    /// path: its leaf's depth plus c(the leaf's samples).
    fn paths(&self, trees: &[Tree], boxes: &[[(f32, f32); DIMS]], z: &[f64; DIMS], paths: &mut [f64; LANES]) {
        let zf: [f32; DIMS] = z.map(|v| v as f32);
        let leaf = leaf_paths();
        // Per tree: its next cut, and the probability that no cut so far
        // isolated the point; `paths` accumulates the expected path.
        // `walking` lists the trees not at a leaf yet.
        let mut at = [0; LANES];
        let mut reach = [1.0; LANES];
        let mut walking = [0; LANES];
        let mut live = 0;
        for (k, (tree, bounds)) in trees.iter().zip(boxes).enumerate() {
            // At the root the cut is made in the feature z is farthest
            // outside of the subsample's box. Strictly inside the box in
            // `f32` is inside it in `f64` too (rounding is monotonic), where
            // every feature's probability is 0: nearly every point.
            let mut p: f64 = 0.0;
            if !(0..DIMS).all(|d| bounds[d].0 < zf[d] && zf[d] < bounds[d].1) {
                for d in 0..DIMS {
                    p = p.max(self.isolation(bounds[d], z[d], d));
                }
            }
            (paths[k], reach[k]) = (p, 1.0 - p);
            match tree.root_leaf {
                Some(n) => paths[k] += reach[k] * (0.0 + f64::from(leaf[usize::from(n)])),
                None => {
                    at[k] = tree.start as usize;
                    walking[live] = k;
                    live += 1;
                }
            }
        }
        // The depth of the cuts being taken.
        let mut depth = 0.0;
        while live > 0 {
            let mut j = 0;
            while j < live {
                let k = walking[j];
                let node = self.nodes[at[k]];
                let d = usize::from(node.dim);
                let p = self.isolation((node.lo, node.hi), z[d], d);
                paths[k] += reach[k] * p * (depth + 1.0);
                reach[k] *= 1.0 - p;
                // Which way a point goes is a coin flip to the branch
                // predictor: the child is selected without a branch.
                let left = zf[d] < node.split;
                let side = std::hint::select_unpredictable(left, LEFT, RIGHT);
                let child = node.children[side];
                let right = trees[k].start as usize + usize::from(child);
                let next = std::hint::select_unpredictable(left, at[k] + 1, right);
                if node.leaves >> side & 1 != 0 {
                    paths[k] += reach[k] * ((depth + 1.0) + f64::from(leaf[usize::from(child)]));
                    // Each tree's sums are its own: the order trees are
                    // walked in within a depth changes no bit.
                    live -= 1;
                    walking[j] = walking[live];
                } else {
                    at[k] = next;
                    j += 1;
                }
            }
            depth += 1.0;
        }
    }

    /// The probability that a cut drawn over the range `(lo, hi)` of
    /// feature `d`, widened to take in `z`, separates `z` from the samples;
    /// 0 when `z` lies within the range (or within rounding noise of it).
    ///
    /// Without a branch: whether a point lies outside a cut's range is as
    /// hard to predict as which way it goes, and a mispredicted branch costs
    /// more than the division. A 0 adds nothing to a path and leaves the
    /// reach as it was, bit for bit.
    #[inline]
    fn isolation(&self, (lo, hi): (f32, f32), z: f64, d: usize) -> f64 {
        let (lo, hi) = (f64::from(lo), f64::from(hi));
        // No NaN here: `max` without its NaN check.
        let (below, above) = (lo - z, z - hi);
        let out = if below > above { below } else { above } - self.noise[d];
        std::hint::select_unpredictable(out > 0.0, out / (out + (hi - lo)), 0.0)
    }

    /// Cuts over all trees (memory: 16 bytes each).
    #[cfg(test)]
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }
}

/// The range of the samples `sub` in every feature.
fn bounds(data: &[[f32; DIMS]], sub: &[u32]) -> [(f32, f32); DIMS] {
    let mut ranges = [(f32::INFINITY, f32::NEG_INFINITY); DIMS];
    for &i in sub {
        for (d, r) in ranges.iter_mut().enumerate() {
            let v = data[i as usize][d];
            r.0 = r.0.min(v);
            r.1 = r.1.max(v);
        }
    }
    ranges
}

/// What [`grow`] made of a subtree.
#[derive(Debug, Clone, Copy)]
enum Grown {
    /// A leaf holding so many samples.
    Leaf(usize),
    /// A cut, at this index of its tree.
    Cut(usize),
}

impl Grown {
    /// As a child of a cut: the byte it is kept in, and whether it is a leaf.
    fn child(self) -> (u8, bool) {
        match self {
            Grown::Leaf(n) => (u8::try_from(n).expect("a cut leaves at most ψ − 1 = 255 samples on a side"), true),
            Grown::Cut(i) => (u8::try_from(i).expect("a tree of ψ = 256 samples has at most 255 cuts"), false),
        }
    }
}

/// What growing one tree needs besides the samples at hand.
struct Grower<'a> {
    data: &'a [[f32; DIMS]],
    /// Depth at which every subtree is a leaf.
    limit: usize,
    rng: &'a mut Rng,
    nodes: &'a mut Vec<Node>,
    /// Where the tree's cuts begin in `nodes`.
    start: usize,
    /// The least a leaf of the tree adds to a path: depth + c(samples).
    shallowest: f64,
}

impl Grower<'_> {
    /// Grows the subtree over `sub` at `depth`, appending its cuts to
    /// `nodes` (pre-order).
    fn grow(&mut self, sub: &mut [u32], depth: usize) -> Grown {
        if depth >= self.limit || sub.len() <= 1 {
            return self.leaf(sub.len(), depth);
        }
        let ranges = bounds(self.data, sub);
        // A random feature among those the samples still differ in.
        let open = ranges.iter().filter(|r| r.1 > r.0).count();
        if open == 0 {
            return self.leaf(sub.len(), depth);
        }
        let k = (self.rng.next_u64() % open as u64) as usize;
        let dim = (0..DIMS).filter(|&d| ranges[d].1 > ranges[d].0).nth(k).expect("one feature is open");
        let (lo, hi) = ranges[dim];
        let mut split = lo + (self.rng.unit() as f32) * (hi - lo);
        if split <= lo {
            // Rounded onto the smallest value: both sides must hold samples.
            split = hi;
        }
        // Partition: left holds values below the cut.
        let mut left = 0;
        for i in 0..sub.len() {
            if self.data[sub[i] as usize][dim] < split {
                sub.swap(i, left);
                left += 1;
            }
        }
        let me = self.nodes.len();
        self.nodes.push(Node { split, lo, hi, dim: dim as u8, leaves: 0, children: [0; 2] });
        let (l, r) = sub.split_at_mut(left);
        let (l, l_leaf) = self.grow(l, depth + 1).child();
        let (r, r_leaf) = self.grow(r, depth + 1).child();
        let node = &mut self.nodes[me];
        node.children = [l, r];
        node.leaves = u8::from(l_leaf) << LEFT | u8::from(r_leaf) << RIGHT;
        Grown::Cut(me - self.start)
    }

    /// A leaf of `n` samples at `depth`.
    fn leaf(&mut self, n: usize, depth: usize) -> Grown {
        self.shallowest = self.shallowest.min(depth as f64 + f64::from(leaf_paths()[n]));
        Grown::Leaf(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(n: usize, seed: u64) -> Vec<[f64; DIMS]> {
        let mut rng = Rng(seed);
        (0..n).map(|_| [rng.gauss(), rng.gauss() * 10.0 + 100.0, rng.gauss() * 0.01]).collect()
    }

    #[test]
    fn c_matches_the_paper() {
        assert_eq!(c(1), 0.0);
        assert_eq!(c(2), 1.0);
        assert!((c(256) - 10.2448).abs() < 1e-3, "{}", c(256));
    }

    #[test]
    fn the_same_seed_builds_the_same_forest() {
        let s = gaussian(512, 1);
        let (a, b) = (Forest::build(&s, 50, 7), Forest::build(&s, 50, 7));
        let x = [0.3, 95.0, 0.0];
        assert_eq!(a.score(&x), b.score(&x));
        assert_ne!(a.score(&x), Forest::build(&s, 50, 8).score(&x));
    }

    #[test]
    fn outliers_score_high_and_ordinary_points_do_not() {
        let s = gaussian(512, 2);
        let f = Forest::build(&s, 100, 3);
        let fresh = gaussian(5000, 99);
        let worst = fresh.iter().map(|x| f.score(x).score).fold(0.0, f64::max);
        let typical = f.score(&[0.0, 100.0, 0.0]).score;
        assert!(typical < 0.45, "centre {typical}");
        assert!(worst < 0.78, "worst of 5000 ordinary points {worst}");
        for x in [[8.0, 100.0, 0.0], [0.0, 200.0, 0.0], [0.0, 100.0, 0.1], [-50.0, 100.0, 0.0]] {
            let s = f.score(&x);
            assert!(s.score > 0.8, "{x:?}: {s:?}");
        }
    }

    #[test]
    fn stopping_early_changes_no_decision_and_no_score() {
        let f = Forest::build(&gaussian(512, 6), 100, 7);
        let mut points = gaussian(3000, 8);
        points.extend([[8.0, 100.0, 0.0], [0.0, 200.0, 0.0], [0.0, 100.0, 0.1], [3.0, 70.0, 0.02]]);
        let mut above = 0;
        for x in &points {
            for threshold in [0.0, 0.5, 0.55, 0.6, 0.75, 0.9, 1.0] {
                let full = f.score(x);
                let early = f.score_above(x, threshold);
                assert_eq!(early, (full.score > threshold).then_some(full), "{x:?} at {threshold}");
                above += usize::from(threshold == 0.75 && early.is_some());
            }
        }
        assert!(above >= 4, "the outliers are above 0.75: {above}");
    }

    /// The bound that stops a walk early holds tree by tree: no tree adds
    /// less to a path than the least `rest` counts for it.
    #[test]
    fn no_tree_adds_less_than_the_walk_counts_on() {
        let f = Forest::build(&gaussian(512, 9), 100, 11);
        let mut points = gaussian(2000, 10);
        points.extend([[8.0, 100.0, 0.0], [0.0, 200.0, 0.0], [0.0, 100.0, 0.1], [3.0, 70.0, 0.02]]);
        let mut inside = 0;
        for x in &points {
            let z: [f64; DIMS] = std::array::from_fn(|d| (x[d] - f.center[d]) / f.scale[d]);
            let core = usize::from(f.in_core(&z));
            inside += core;
            for (k, (trees, boxes)) in f.trees.chunks(LANES).zip(f.boxes.chunks(LANES)).enumerate() {
                let mut paths = [0.0; LANES];
                f.paths(trees, boxes, &z, &mut paths);
                for (j, path) in paths[..trees.len()].iter().enumerate() {
                    let t = k * LANES + j;
                    let least = f.rest[t][core] - f.rest[t + 1][core];
                    assert!(*path >= least - 1e-9, "{x:?}, tree {t}: path {path} below {least}");
                }
            }
        }
        assert!(inside > 1000 && inside < points.len(), "{inside} of {} inside every box", points.len());
    }

    #[test]
    fn a_constant_training_set_scores_only_real_changes() {
        let s = vec![[5.0, 0.0, 0.0]; 300];
        let f = Forest::build(&s, 20, 0);
        assert!(f.score(&[5.0 + 1e-12, 0.0, 0.0]).score <= 0.5);
        assert!(f.score(&[5.1, 0.0, 0.0]).score > 0.9);
    }

    #[test]
    fn memory_is_bounded_by_the_subsample() {
        let f = Forest::build(&gaussian(2000, 4), 100, 5);
        assert!(f.nodes() <= 100 * (SUBSAMPLE - 1));
        assert_eq!(std::mem::size_of::<Node>(), 16);
    }
}
