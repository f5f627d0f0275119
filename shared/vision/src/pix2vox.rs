//! Pix2Vox-F and Pix2Vox-A (Xie et al., ICCV 2019) as the official PyTorch code builds them
//! (facts in `../shared/reference/pix2vox/README.md`).
//!
//! Variable names map one-to-one onto the official state_dicts: the official
//! `encoder_state_dict["module.vgg.0.weight"]` is our `encoder.vgg.0.weight`, and likewise
//! for `decoder`, `merger` and `refiner` (see [`var_name_for_official`]). Sequential
//! indices are kept: a block's convolution is `.0` and its BatchNorm `.1`.
//!
//! Shapes: images `[B, V, 3, 224, 224]` (V views of one object) to occupancy probabilities
//! `[B, 32, 32, 32]` indexed `[x][y][z]`.

use std::fmt;
use std::str::FromStr;

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Which network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Variant {
    /// Pix2Vox-F: the fast one, 7.4 M parameters, no refiner.
    F,
    /// Pix2Vox-A: the accurate one, 114 M parameters, with the refiner.
    A,
}

impl Variant {
    pub fn has_refiner(self) -> bool {
        matches!(self, Variant::A)
    }

    /// Channels, height and width of one view's encoder output.
    pub fn encoder_feature_shape(self) -> [i64; 3] {
        match self {
            Variant::F => [128, 4, 4],
            Variant::A => [256, 8, 8],
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Variant::F => "F",
            Variant::A => "A",
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("unknown Pix2Vox variant {0:?}: expected F or A")]
pub struct UnknownVariant(pub String);

impl FromStr for Variant {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().trim_start_matches("PIX2VOX-") {
            "F" => Ok(Variant::F),
            "A" => Ok(Variant::A),
            _ => Err(UnknownVariant(s.to_string())),
        }
    }
}

/// The four official sub-networks, as named in the checkpoint (`<name>_state_dict`) and as
/// the first component of our variable names.
pub const MODULES: [&str; 4] = ["encoder", "decoder", "merger", "refiner"];

/// Our variable name for an official state_dict entry, e.g. (`encoder_state_dict`,
/// `module.vgg.0.weight`) -> `encoder.vgg.0.weight`. `None` for dicts that hold no network.
pub fn var_name_for_official(state_dict: &str, key: &str) -> Option<String> {
    let module = state_dict.strip_suffix("_state_dict")?;
    if !MODULES.contains(&module) {
        return None;
    }
    let key = key.strip_prefix("module.").unwrap_or(key);
    Some(format!("{module}.{key}"))
}

// ---------------------------------------------------------------------------------------
// Building blocks

/// Initialisation of the official training code: kaiming-normal conv weights with zero bias
/// (BatchNorm 1/0 and Linear N(0, 0.01) are set where those layers are built).
fn kaiming() -> nn::Init {
    nn::Init::Kaiming {
        dist: nn::init::NormalOrUniform::Normal,
        fan: nn::init::FanInOut::FanIn,
        non_linearity: nn::init::NonLinearity::ReLU,
    }
}

/// BatchNorm as the official `init_weights` leaves it: weight 1, bias 0 (tch's default
/// draws the weight from U(0, 1)).
fn batch_norm_config() -> nn::BatchNormConfig {
    nn::BatchNormConfig { eps: 1e-5, momentum: 0.1, ws_init: nn::Init::Const(1.0), bs_init: nn::Init::Const(0.0), ..Default::default() }
}

fn batch_norm2d(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, batch_norm_config())
}

fn batch_norm3d(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm3d(p, c, batch_norm_config())
}

fn conv2d(p: nn::Path, cin: i64, cout: i64, k: i64, padding: i64) -> nn::Conv2D {
    let config = nn::ConvConfig { padding, ws_init: kaiming(), bs_init: nn::Init::Const(0.0), ..Default::default() };
    nn::conv2d(p, cin, cout, k, config)
}

fn conv3d(p: nn::Path, cin: i64, cout: i64, k: i64, padding: i64) -> nn::Conv3D {
    let config = nn::ConvConfig { padding, ws_init: kaiming(), bs_init: nn::Init::Const(0.0), ..Default::default() };
    nn::conv3d(p, cin, cout, k, config)
}

/// ConvTranspose3d without bias (the official `TCONV_USE_BIAS = False`).
fn tconv3d(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, padding: i64) -> nn::ConvTranspose3D {
    let config = nn::ConvTransposeConfig { stride, padding, bias: false, ws_init: kaiming(), ..Default::default() };
    nn::conv_transpose3d(p, cin, cout, k, config)
}

fn linear(p: nn::Path, cin: i64, cout: i64) -> nn::Linear {
    let config = nn::LinearConfig {
        ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.01 },
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    nn::linear(p, cin, cout, config)
}

/// `LeakyReLU(0.2)`: tch's `leaky_relu` has the fixed slope 0.01. For a slope below 1,
/// `max(x, 0.2 x)` is exactly PyTorch's `x > 0 ? x : 0.2 x`.
fn leaky_relu_02(x: &Tensor) -> Tensor {
    x.maximum(&(x * 0.2))
}

fn max_pool2d(x: &Tensor, k: i64) -> Tensor {
    x.max_pool2d([k, k], [k, k], [0, 0], [1, 1], false)
}

fn max_pool3d(x: &Tensor, k: i64) -> Tensor {
    x.max_pool3d([k, k, k], [k, k, k], [0, 0, 0], [1, 1, 1], false)
}

/// Conv2d + BatchNorm2d (Sequential indices 0 and 1 after `path`).
#[derive(Debug)]
struct ConvBn2d {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl ConvBn2d {
    fn new(conv_path: nn::Path, bn_path: nn::Path, cin: i64, cout: i64, k: i64, padding: i64) -> Self {
        ConvBn2d { conv: conv2d(conv_path, cin, cout, k, padding), bn: batch_norm2d(bn_path, cout) }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.bn.forward_t(&x.apply(&self.conv), train)
    }

    /// Stop gradients to the block's weights (`requires_grad = False` upstream). The
    /// BatchNorm running statistics still update in training mode, as upstream.
    fn freeze(&self) {
        let params = [Some(&self.conv.ws), self.conv.bs.as_ref(), self.bn.ws.as_ref(), self.bn.bs.as_ref()];
        for p in params.into_iter().flatten() {
            let _ = p.set_requires_grad(false);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Encoder

/// `vgg16_bn().features[:27]`: (conv index, input channels, output channels, max-pool after).
/// Each conv at index i has its BatchNorm at i+1 and a ReLU at i+2; pools sit at 6, 13, 23.
const VGG_TRUNK: [(usize, i64, i64, bool); 8] = [
    (0, 3, 64, false),
    (3, 64, 64, true),
    (7, 64, 128, false),
    (10, 128, 128, true),
    (14, 128, 256, false),
    (17, 256, 256, false),
    (20, 256, 256, true),
    (24, 256, 512, false),
];

#[derive(Debug)]
struct Encoder {
    trunk: Vec<(ConvBn2d, bool)>,
    layer1: ConvBn2d,
    layer2: ConvBn2d,
    layer3: ConvBn2d,
    /// Max-pool kernel after layer2 (F: 4, A: 3).
    layer2_pool: i64,
}

impl Encoder {
    fn new(p: &nn::Path, variant: Variant) -> Self {
        let vgg = p / "vgg";
        let trunk: Vec<(ConvBn2d, bool)> = VGG_TRUNK
            .iter()
            .map(|&(i, cin, cout, pool)| {
                (ConvBn2d::new(&vgg / i.to_string(), &vgg / (i + 1).to_string(), cin, cout, 3, 1), pool)
            })
            .collect();
        // the official encoder freezes the trunk (requires_grad False) and trains the head
        for (block, _) in &trunk {
            block.freeze();
        }
        let block = |name: &str, cin, cout, k| {
            let l = p / name;
            ConvBn2d::new(&l / "0", &l / "1", cin, cout, k, 0)
        };
        match variant {
            Variant::F => Encoder {
                trunk,
                layer1: block("layer1", 512, 512, 1),
                layer2: block("layer2", 512, 256, 3),
                layer3: block("layer3", 256, 128, 3),
                layer2_pool: 4,
            },
            Variant::A => Encoder {
                trunk,
                layer1: block("layer1", 512, 512, 3),
                layer2: block("layer2", 512, 512, 3),
                layer3: block("layer3", 512, 256, 1),
                layer2_pool: 3,
            },
        }
    }

    /// `[N, 3, 224, 224]` -> `[N, C, H, W]`.
    fn forward_t(&self, images: &Tensor, train: bool) -> Tensor {
        self.head_t(&self.trunk_t(images, train), train)
    }

    /// The frozen VGG trunk: `[N, 3, 224, 224]` -> `[N, 512, 28, 28]`.
    fn trunk_t(&self, images: &Tensor, train: bool) -> Tensor {
        let mut x = images.shallow_clone();
        for (block, pool) in &self.trunk {
            x = block.forward_t(&x, train).relu();
            if *pool {
                x = max_pool2d(&x, 2);
            }
        }
        x
    }

    /// Exact per-channel statistics of each trunk convolution's output over `images`, layer
    /// by layer, streaming over chunks so memory stays bounded (the first layer's output
    /// alone is 12.8 MB an image): each layer re-runs the chunk through the layers before
    /// it, already calibrated.
    fn calibrate_trunk(&self, images: &Tensor) {
        const CHUNK: i64 = 16;
        let n = images.size()[0];
        for (k, (block, _)) in self.trunk.iter().enumerate() {
            let channels = block.bn.running_mean.size()[0];
            let mut sum = Tensor::zeros([channels], (tch::Kind::Double, images.device()));
            let mut sum_sq = Tensor::zeros([channels], (tch::Kind::Double, images.device()));
            let mut count = 0i64;
            let mut start = 0;
            while start < n {
                let mut x = images.narrow(0, start, CHUNK.min(n - start));
                for (before, pool) in &self.trunk[..k] {
                    x = before.forward_t(&x, false).relu();
                    if *pool {
                        x = max_pool2d(&x, 2);
                    }
                }
                let y = x.apply(&block.conv).to_kind(tch::Kind::Double);
                sum += y.sum_dim_intlist([0i64, 2, 3].as_slice(), false, None);
                sum_sq += (&y * &y).sum_dim_intlist([0i64, 2, 3].as_slice(), false, None);
                count += y.size()[0] * y.size()[2] * y.size()[3];
                start += CHUNK;
            }
            let mean = &sum / count as f64;
            // unbiased, as BatchNorm's running variance
            let var = (&sum_sq - &mean * &mean * count as f64) / (count - 1).max(1) as f64;
            block.bn.running_mean.shallow_clone().copy_(&mean.to_kind(tch::Kind::Float));
            block.bn.running_var.shallow_clone().copy_(&var.clamp_min(0.0).to_kind(tch::Kind::Float));
        }
    }

    fn head_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = self.layer1.forward_t(x, train).elu();
        let x = max_pool2d(&self.layer2.forward_t(&x, train).elu(), self.layer2_pool);
        self.layer3.forward_t(&x, train).elu()
    }
}

// ---------------------------------------------------------------------------------------
// Decoder

#[derive(Debug)]
struct Decoder {
    /// layer1..4: ConvTranspose3d(k4, s2, p1) + BatchNorm3d + ReLU.
    up: Vec<(nn::ConvTranspose3D, nn::BatchNorm)>,
    /// layer5: ConvTranspose3d(8, 1, k1) + Sigmoid.
    layer5: nn::ConvTranspose3D,
    in_channels: i64,
}

impl Decoder {
    fn new(p: &nn::Path, variant: Variant) -> Self {
        let channels: [i64; 5] = match variant {
            Variant::F => [256, 128, 64, 32, 8],
            Variant::A => [2048, 512, 128, 32, 8],
        };
        let up = (0..4)
            .map(|i| {
                let l = p / format!("layer{}", i + 1);
                (tconv3d(&l / "0", channels[i], channels[i + 1], 4, 2, 1), batch_norm3d(&l / "1", channels[i + 1]))
            })
            .collect();
        let layer5 = tconv3d(p / "layer5" / "0", 8, 1, 1, 1, 0);
        Decoder { up, layer5, in_channels: channels[0] }
    }

    /// `[N, C, H, W]` features -> (`[N, 9, 32, 32, 32]` raw, `[N, 32, 32, 32]` volume).
    fn forward_t(&self, features: &Tensor, train: bool) -> (Tensor, Tensor) {
        let mut x = features.view([-1, self.in_channels, 2, 2, 2]);
        for (tconv, bn) in &self.up {
            x = bn.forward_t(&x.apply(tconv), train).relu();
        }
        // The sigmoid in float32 even under bf16 autocast: bf16 rounds p = 0.998 up to 1.0,
        // and BCE then charges an empty voxel the clamped log(0) (100) with a 1e12 gradient.
        let volume = x.apply(&self.layer5).to_kind(tch::Kind::Float).sigmoid();
        let raw = Tensor::cat(&[&x, &volume], 1);
        (raw, volume.squeeze_dim(1))
    }
}

// ---------------------------------------------------------------------------------------
// Merger (context-aware fusion)

#[derive(Debug)]
struct Merger {
    layers: Vec<(nn::Conv3D, nn::BatchNorm)>,
}

impl Merger {
    fn new(p: &nn::Path) -> Self {
        let channels = [9, 16, 8, 4, 2, 1];
        let layers = (0..5)
            .map(|i| {
                let l = p / format!("layer{}", i + 1);
                (conv3d(&l / "0", channels[i], channels[i + 1], 3, 1), batch_norm3d(&l / "1", channels[i + 1]))
            })
            .collect();
        Merger { layers }
    }

    /// Per-view scores: `[N, 9, 32, 32, 32]` -> `[N, 32, 32, 32]`.
    fn scores_t(&self, raw: &Tensor, train: bool) -> Tensor {
        let mut x = raw.shallow_clone();
        for (conv, bn) in &self.layers {
            x = leaky_relu_02(&bn.forward_t(&x.apply(conv), train));
        }
        x.squeeze_dim(1)
    }
}

// ---------------------------------------------------------------------------------------
// Refiner (Pix2Vox-A)

#[derive(Debug)]
struct Refiner {
    /// layer1..3: Conv3d(k4, p2) + BatchNorm3d + LeakyReLU(0.2) + MaxPool3d(2).
    down: Vec<(nn::Conv3D, nn::BatchNorm)>,
    layer4: nn::Linear,
    layer5: nn::Linear,
    /// layer6, layer7: ConvTranspose3d(k4, s2, p1) + BatchNorm3d + ReLU.
    up: Vec<(nn::ConvTranspose3D, nn::BatchNorm)>,
    /// layer8: ConvTranspose3d(32, 1, k4, s2, p1) + Sigmoid.
    layer8: nn::ConvTranspose3D,
}

impl Refiner {
    fn new(p: &nn::Path) -> Self {
        let down_channels = [1, 32, 64, 128];
        let down = (0..3)
            .map(|i| {
                let l = p / format!("layer{}", i + 1);
                (
                    conv3d(&l / "0", down_channels[i], down_channels[i + 1], 4, 2),
                    batch_norm3d(&l / "1", down_channels[i + 1]),
                )
            })
            .collect();
        let up = [(6, 128, 64), (7, 64, 32)]
            .iter()
            .map(|&(n, cin, cout)| {
                let l = p / format!("layer{n}");
                (tconv3d(&l / "0", cin, cout, 4, 2, 1), batch_norm3d(&l / "1", cout))
            })
            .collect();
        Refiner {
            down,
            layer4: linear(p / "layer4" / "0", 8192, 2048),
            layer5: linear(p / "layer5" / "0", 2048, 8192),
            up,
            layer8: tconv3d(p / "layer8" / "0", 32, 1, 4, 2, 1),
        }
    }

    /// `[B, 32, 32, 32]` -> `[B, 32, 32, 32]`.
    fn forward_t(&self, coarse: &Tensor, train: bool) -> Tensor {
        let v32 = coarse.view([-1, 1, 32, 32, 32]);
        let mut levels = vec![v32.shallow_clone()];
        for (conv, bn) in &self.down {
            let prev = levels.last().map(Tensor::shallow_clone).unwrap_or_else(|| v32.shallow_clone());
            levels.push(max_pool3d(&leaky_relu_02(&bn.forward_t(&prev.apply(conv), train)), 2));
        }
        // levels: [32^3 x1, 16^3 x32, 8^3 x64, 4^3 x128]
        let flat = levels[3].view([-1, 8192]).apply(&self.layer4).relu().apply(&self.layer5).relu();
        let mut x = &levels[3] + flat.view([-1, 128, 4, 4, 4]);
        for (i, (tconv, bn)) in self.up.iter().enumerate() {
            x = &levels[2 - i] + bn.forward_t(&x.apply(tconv), train).relu();
        }
        let v32_r = (&levels[0] + x.apply(&self.layer8).sigmoid()) * 0.5;
        v32_r.view([-1, 32, 32, 32])
    }
}

// ---------------------------------------------------------------------------------------
// The whole network

/// Every intermediate the parity vectors hold, plus the final volume.
#[derive(Debug)]
pub struct Pix2VoxOutput {
    /// `[B, V, C, H, W]` (F: 128x4x4, A: 256x8x8)
    pub encoder_features: Tensor,
    /// `[B, V, 9, 32, 32, 32]`: the decoder's last 8 feature channels and its volume
    pub decoder_raw: Tensor,
    /// `[B, V, 32, 32, 32]`: one coarse volume per view
    pub decoder_coarse: Tensor,
    /// `[B, 32, 32, 32]`: the views fused by the merger (the mean when the merger is off)
    pub merged: Tensor,
    /// `[B, 32, 32, 32]`: Pix2Vox-A's refiner output
    pub refined: Option<Tensor>,
}

impl Pix2VoxOutput {
    /// The network's answer: refined when there is a refiner, else merged.
    pub fn volume(&self) -> &Tensor {
        self.refined.as_ref().unwrap_or(&self.merged)
    }
}

/// Which stages run, as the official code's epoch gates choose (`EPOCH_START_USE_MERGER`,
/// `EPOCH_START_USE_REFINER`). At test time both are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stages {
    pub merger: bool,
    pub refiner: bool,
}

impl Default for Stages {
    fn default() -> Self {
        Stages { merger: true, refiner: true }
    }
}

#[derive(Debug)]
pub struct Pix2Vox {
    variant: Variant,
    encoder: Encoder,
    decoder: Decoder,
    merger: Merger,
    refiner: Option<Refiner>,
}

impl Pix2Vox {
    /// Build the network's variables under `root` (normally `vs.root()`).
    pub fn new(root: &nn::Path, variant: Variant) -> Self {
        Pix2Vox {
            variant,
            encoder: Encoder::new(&(root / "encoder"), variant),
            decoder: Decoder::new(&(root / "decoder"), variant),
            merger: Merger::new(&(root / "merger")),
            refiner: variant.has_refiner().then(|| Refiner::new(&(root / "refiner"))),
        }
    }

    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// Forward pass on `[B, V, 3, 224, 224]` images.
    ///
    /// With `train` the BatchNorm layers use batch statistics (the frozen VGG trunk's
    /// included, as in the official training) and each view runs separately through the
    /// encoder and decoder, so batch statistics are per view exactly as upstream. In eval
    /// mode the views are folded into the batch, which gives the same numbers faster.
    pub fn forward_t(&self, images: &Tensor, train: bool, stages: Stages) -> Pix2VoxOutput {
        self.forward_from(images, train, stages, |x, train| self.encoder.forward_t(x, train))
    }

    /// Forward pass from the frozen trunk's output, `[B, V, 512, 28, 28]` (what
    /// [`Pix2Vox::trunk_t`] gives, e.g. read back from a feature cache): the encoder head,
    /// decoder, merger and refiner, with BatchNorm in the mode `train` says.
    pub fn forward_from_trunk_t(&self, trunk_features: &Tensor, train: bool, stages: Stages) -> Pix2VoxOutput {
        self.forward_from(trunk_features, train, stages, |x, train| self.encoder.head_t(x, train))
    }

    fn forward_from(&self, input: &Tensor, train: bool, stages: Stages, encode: impl Fn(&Tensor, bool) -> Tensor) -> Pix2VoxOutput {
        let size = input.size();
        let (b, v) = (size[0], size[1]);
        let (encoder_features, decoder_raw, decoder_coarse) = if train {
            let mut features = Vec::new();
            let mut raws = Vec::new();
            let mut coarses = Vec::new();
            for view in 0..v {
                let f = encode(&input.select(1, view), train);
                let (raw, coarse) = self.decoder.forward_t(&f, train);
                features.push(f);
                raws.push(raw);
                coarses.push(coarse);
            }
            (Tensor::stack(&features, 1), Tensor::stack(&raws, 1), Tensor::stack(&coarses, 1))
        } else {
            let mut folded_shape = vec![b * v];
            folded_shape.extend_from_slice(&size[2..]);
            let f = encode(&input.reshape(folded_shape), false);
            let (raw, coarse) = self.decoder.forward_t(&f, false);
            let unfold = |t: Tensor| {
                let mut shape = vec![b, v];
                shape.extend_from_slice(&t.size()[1..]);
                t.reshape(shape)
            };
            (unfold(f), unfold(raw), unfold(coarse))
        };
        let merged = if stages.merger {
            self.merge_t(&decoder_raw, &decoder_coarse, train)
        } else {
            decoder_coarse.mean_dim(1, false, None)
        };
        let refined = match (&self.refiner, stages.refiner) {
            (Some(refiner), true) => Some(refiner.forward_t(&merged, train)),
            _ => None,
        };
        Pix2VoxOutput { encoder_features, decoder_raw, decoder_coarse, merged, refined }
    }

    /// Context-aware fusion: per-view scores, softmax over views, weighted sum, clamp.
    fn merge_t(&self, raw: &Tensor, coarse: &Tensor, train: bool) -> Tensor {
        let size = raw.size();
        let (b, v) = (size[0], size[1]);
        let scores = if train {
            let per_view: Vec<Tensor> = (0..v).map(|i| self.merger.scores_t(&raw.select(1, i), train)).collect();
            Tensor::stack(&per_view, 1)
        } else {
            self.merger.scores_t(&raw.reshape([b * v, 9, 32, 32, 32]), false).reshape([b, v, 32, 32, 32])
        };
        let weights = scores.softmax(1, None);
        (coarse * weights).sum_dim_intlist(1, false, None).clamp(0.0, 1.0)
    }

    /// The frozen trunk's output for `[N, 3, 224, 224]` images (what caching trunk
    /// features would store; used to measure the trunk's share of a training step).
    pub fn trunk_t(&self, images: &Tensor, train: bool) -> Tensor {
        self.encoder.trunk_t(images, train)
    }

    /// Sets the frozen trunk's BatchNorm running statistics to the exact per-channel mean
    /// and (unbiased) variance of its inputs over `images` (`[N, 3, 224, 224]`), layer by
    /// layer, each layer seeing the previous ones already normalised with their new
    /// statistics. After this the eval-mode trunk normalises as the official train-mode
    /// trunk does on average, so its output can be computed once per rendering and cached.
    pub fn calibrate_trunk(&self, images: &Tensor) {
        tch::no_grad(|| self.encoder.calibrate_trunk(images));
    }

    /// Eval-mode forward without autograd: the test-time network.
    pub fn infer(&self, images: &Tensor) -> Pix2VoxOutput {
        tch::no_grad(|| self.forward_t(images, false, Stages::default()))
    }
}

/// The trunk's variables, which the official training keeps frozen (they are created with
/// `requires_grad` off; `VarStore::unfreeze` would turn it back on, so training code must
/// not call it).
pub fn is_frozen_trunk_variable(name: &str) -> bool {
    name.starts_with("encoder.vgg.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameter_count(variant: Variant) -> (i64, usize) {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _net = Pix2Vox::new(&vs.root(), variant);
        let vars = vs.variables();
        let params: i64 = vars
            .iter()
            .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
            .map(|(_, t)| t.numel() as i64)
            .sum();
        (params, vars.len())
    }

    #[test]
    fn parameter_counts_match_the_official_networks() {
        // README: Pix2Vox-F has 7,436,307 parameters; keys_F.tsv lists 137 state_dict
        // entries, 20 of them BatchNorm `num_batches_tracked` counters we do not keep.
        assert_eq!(parameter_count(Variant::F), (7_436_307, 137 - 20));
    }

    #[test]
    fn only_the_vgg_trunk_is_frozen() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _net = Pix2Vox::new(&vs.root(), Variant::F);
        for (name, t) in vs.variables() {
            let is_stat = name.ends_with("running_mean") || name.ends_with("running_var");
            let expect_grad = !is_stat && !is_frozen_trunk_variable(&name);
            assert_eq!(t.requires_grad(), expect_grad, "{name}");
        }
        // README: 4,517,331 trainable parameters
        let trainable: i64 = vs.variables().values().filter(|t| t.requires_grad()).map(|t| t.numel() as i64).sum();
        assert_eq!(trainable, 4_517_331);
    }

    #[test]
    fn official_names_map_onto_ours() {
        assert_eq!(
            var_name_for_official("encoder_state_dict", "module.vgg.0.weight").as_deref(),
            Some("encoder.vgg.0.weight")
        );
        assert_eq!(
            var_name_for_official("refiner_state_dict", "module.layer4.0.bias").as_deref(),
            Some("refiner.layer4.0.bias")
        );
        assert_eq!(var_name_for_official("encoder_solver_state_dict", "state"), None);
        assert_eq!("pix2vox-a".parse(), Ok(Variant::A));
        assert!("B".parse::<Variant>().is_err());
    }

    #[test]
    fn batchnorm_starts_as_the_official_init_leaves_it() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _net = Pix2Vox::new(&vs.root(), Variant::F);
        let vars = vs.variables();
        for name in ["encoder.vgg.1.weight", "encoder.layer1.1.weight", "decoder.layer1.1.weight", "merger.layer1.1.weight"] {
            assert!(vars[name].eq(1.0).all().int64_value(&[]) == 1, "{name}");
            let bias = name.replace("weight", "bias");
            assert!(vars[&bias].eq(0.0).all().int64_value(&[]) == 1, "{bias}");
        }
    }

    #[test]
    fn trunk_calibration_sets_each_batchnorm_to_its_inputs_statistics() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = Pix2Vox::new(&vs.root(), Variant::F);
        // 20 images: more than one chunk, and a last chunk that is not full
        let images = Tensor::rand([20, 3, 224, 224], (tch::Kind::Float, tch::Device::Cpu)) * 2.0 - 1.0;
        net.calibrate_trunk(&images);
        let trunk = &net.encoder.trunk;
        // layer 0 sees the images; layer 1 sees layer 0's calibrated, eval-mode output
        let y0 = tch::no_grad(|| images.apply(&trunk[0].0.conv));
        let x1 = tch::no_grad(|| trunk[0].0.forward_t(&images, false).relu());
        let y1 = tch::no_grad(|| x1.apply(&trunk[1].0.conv));
        for (block, y) in [(&trunk[0].0, &y0), (&trunk[1].0, &y1)] {
            let mean = y.mean_dim([0i64, 2, 3].as_slice(), false, tch::Kind::Float);
            let var = y.var_dim([0i64, 2, 3].as_slice(), true, false);
            let dm = (&block.bn.running_mean - &mean).abs().max().double_value(&[]);
            let dv = ((&block.bn.running_var - &var).abs() / var.clamp_min(1e-6)).max().double_value(&[]);
            assert!(dm < 1e-4 && dv < 1e-3, "mean off by {dm}, variance by {dv}");
        }
        // so the eval-mode output of a calibrated layer is normalised over those images
        let z = tch::no_grad(|| trunk[1].0.forward_t(&x1, false));
        let m = z.mean(tch::Kind::Float).double_value(&[]);
        let v = z.var(true).double_value(&[]);
        assert!(m.abs() < 1e-3 && (v - 1.0).abs() < 1e-2, "mean {m}, variance {v}");
    }

    #[test]
    fn shapes_flow_through_for_several_views() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = Pix2Vox::new(&vs.root(), Variant::F);
        let images = Tensor::randn([2, 3, 3, 224, 224], (tch::Kind::Float, tch::Device::Cpu));
        let out = net.infer(&images);
        assert_eq!(out.encoder_features.size(), vec![2, 3, 128, 4, 4]);
        assert_eq!(out.decoder_raw.size(), vec![2, 3, 9, 32, 32, 32]);
        assert_eq!(out.decoder_coarse.size(), vec![2, 3, 32, 32, 32]);
        assert_eq!(out.merged.size(), vec![2, 32, 32, 32]);
        assert!(out.refined.is_none());
        let min = out.merged.min().double_value(&[]);
        let max = out.merged.max().double_value(&[]);
        assert!((0.0..=1.0).contains(&min) && (0.0..=1.0).contains(&max));
    }
}
