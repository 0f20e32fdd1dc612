package synth

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/fksteer/fksteer/models/onnxgraph"
)

// SDVariant names a Stable-Diffusion export layout that [WriteSD] can write.
type SDVariant string

// The export layouts WriteSD writes. They differ where real exports differ:
//
//	variant       input_ids  float I/O  timestep        VAE encoder out    external weights          text encoders (D)
//	sd15          int32      float32    int64 [1]       latent_sample      unet/model.onnx_data      1 (32)
//	sd15-optimum  int64      float32    float32 scalar  latent_parameters  text_encoder/weights.pb   1 (32)
//	sd15-fp16     int32      float16    float16 [b]     latent_parameters  -                         1 (32)
//	sd2-v         int32      float32    float32 [b]     latent_sample      -                         1 (40), pad "!"
//	sd-turbo      int32      float32    float32 [b]     latent_sample      -                         1 (40), pad "!"
//	sdxl          int64      float32    float32 [b]     latent_parameters  -                         2 (32, 48+text_embeds)
//	lcm           int32      float32    int64 [b]       latent_sample      -                         1 (32)
//
// sd2-v predicts v, the others eps. The SDXL UNet also reads text_embeds [b, 48] and time_ids
// [b, 6], the LCM UNet timestep_cond [b, 256]. model_index.json names the pipeline and
// scheduler of the real model (sd-turbo's also "_name_or_path": "stabilityai/sd-turbo").
const (
	SD15        SDVariant = "sd15"         // SD 1.5, old diffusers script style
	SD15Optimum SDVariant = "sd15-optimum" // SD 1.5, optimum style
	SD15FP16    SDVariant = "sd15-fp16"    // float16 I/O everywhere
	SD2V        SDVariant = "sd2-v"        // SD 2.1, v-prediction
	SDTurbo     SDVariant = "sd-turbo"     // guidance-distilled, trailing Euler
	SDXL        SDVariant = "sdxl"         // two text encoders, text_embeds, time_ids
	LCM         SDVariant = "lcm"          // LCM-distilled UNet with timestep_cond
)

// SDVariants lists every variant, in the order above.
var SDVariants = []SDVariant{SD15, SD15Optimum, SD15FP16, SD2V, SDTurbo, SDXL, LCM}

// SDOptions configures [WriteSD]. The zero value gives the defaults.
type SDOptions struct {
	SampleSize int    // latent height and width (unet/config.json sample_size); default 8 → 64x64 images
	Seed       uint64 // weights; default 1 (0 means 1)
	Convs      int    // extra 3x3 conv layers in the UNet's residual branch (compute ballast for benchmarks); default 0
}

// Tensor names of the Stable-Diffusion exports, as optimum and diffusers' conversion script
// name them. The text encoders also use [InputIDs], [LastHiddenState], [PoolerOutput] and
// [TextEmbeds]; the VAE decoder's output is [Sample] too.
const (
	Sample              = "sample"                // UNet input, VAE encoder input, VAE decoder output
	Timestep            = "timestep"              // UNet input
	EncoderHiddenStates = "encoder_hidden_states" // UNet input
	TimeIDs             = "time_ids"              // SDXL UNet input [batch, 6]
	TimestepCond        = "timestep_cond"         // LCM UNet input [batch, 256]
	OutSample           = "out_sample"            // UNet output
	LatentSample        = "latent_sample"         // VAE decoder input; old-style VAE encoder output
	LatentParameters    = "latent_parameters"     // newer optimum VAE encoder output: mean, log-variance
	HiddenStatesPrefix  = "hidden_states."        // SDXL text encoders: hidden_states.0 (embeddings) ... hidden_states.L
)

const (
	sdTimeCondDim        = 256 // LCM's time_cond_proj_dim: the width of timestep_cond
	sdAdditionTimeEmbDim = 256 // SDXL's addition_time_embed_dim (config only: the UNet embeds no time ids)
)

// sdText describes one text encoder of a variant.
type sdText struct {
	folder, tokenizer string // text_encoder, tokenizer (or the _2 pair)
	dim               int64  // hidden size D
	layers            int    // L causal layers
	proj              int64  // > 0: CLIPTextModelWithProjection, text_embeds [batch, proj]
	hidden            bool   // hidden_states.0 ... hidden_states.L outputs
	pad               string // the tokenizer's pad token
}

// sdSpec is everything that differs between variants.
type sdSpec struct {
	pipeline   string         // model_index.json _class_name
	nameOrPath string         // model_index.json _name_or_path, if any
	scheduler  map[string]any // scheduler_config.json
	features   bool           // feature_extractor: CLIPImageProcessor (else [null, null])
	optimum    bool           // configs list unused options as null, as newer diffusers saves them
	float      onnxgraph.ElemType
	ids        onnxgraph.ElemType // input_ids
	timestep   onnxgraph.ElemType
	tdims      []onnxgraph.Dim // timestep dims
	vpred      bool
	latentOut  string  // VAE encoder output: LatentSample or LatentParameters
	scaling    float64 // vae scaling_factor
	texts      []sdText
	xl, lcm    bool
	unetData   string // external data file of the UNet, if any
	textData   string // external data file of the (first) text encoder, if any
}

// crossDim is the UNet's cross_attention_dim: the text encoders' hidden sizes, concatenated
// (SDXL feeds the UNet both encoders' penultimate hidden states side by side).
func (s sdSpec) crossDim() int64 {
	var d int64
	for _, t := range s.texts {
		d += t.dim
	}
	return d
}

// textEmbedsDim is the width of SDXL's pooled text_embeds input, 0 for other variants.
func (s sdSpec) textEmbedsDim() int64 {
	if !s.xl {
		return 0
	}
	return s.texts[1].proj
}

const (
	sdEOS  = "<|endoftext|>"
	sdBang = "!"
)

// SD 1.x and 2.x text encoders: one CLIPTextModel each, of different widths.
var (
	sd1Text = []sdText{{folder: "text_encoder", tokenizer: "tokenizer", dim: 32, layers: 2, pad: sdEOS}}
	sd2Text = []sdText{{folder: "text_encoder", tokenizer: "tokenizer", dim: 40, layers: 2, pad: sdBang}}
	xlText  = []sdText{
		{folder: "text_encoder", tokenizer: "tokenizer", dim: 32, layers: 2, hidden: true, pad: sdEOS},
		{folder: "text_encoder_2", tokenizer: "tokenizer_2", dim: 48, layers: 2, proj: 48, hidden: true, pad: sdBang},
	}
)

func sdSpecOf(v SDVariant) (sdSpec, error) {
	batch := onnxgraph.Sym("batch_size")
	s := sdSpec{
		pipeline: "StableDiffusionPipeline", features: true, optimum: true,
		float: onnxgraph.Float32, ids: onnxgraph.Int32,
		timestep: onnxgraph.Float32, tdims: []onnxgraph.Dim{batch},
		latentOut: LatentSample, scaling: 0.18215, texts: sd1Text,
		scheduler: pndmConfig(),
	}
	switch v {
	case SD15:
		s.optimum = false
		s.timestep, s.tdims = onnxgraph.Int64, []onnxgraph.Dim{onnxgraph.Fixed(1)}
		s.unetData = "model.onnx_data"
	case SD15Optimum:
		s.ids = onnxgraph.Int64
		s.tdims = nil
		s.latentOut = LatentParameters
		s.textData = "weights.pb"
	case SD15FP16:
		s.float, s.timestep = onnxgraph.Float16, onnxgraph.Float16
		s.latentOut = LatentParameters
	case SD2V:
		s.texts, s.vpred = sd2Text, true
		s.scheduler = ddimVConfig()
	case SDTurbo:
		s.texts, s.features = sd2Text, false
		s.nameOrPath = "stabilityai/sd-turbo"
		s.scheduler = eulerConfig("trailing")
	case SDXL:
		s.pipeline, s.texts, s.xl, s.features = "StableDiffusionXLPipeline", xlText, true, false
		s.ids, s.latentOut, s.scaling = onnxgraph.Int64, LatentParameters, 0.13025
		s.scheduler = eulerConfig("leading")
	case LCM:
		s.pipeline, s.lcm = "LatentConsistencyModelPipeline", true
		s.timestep = onnxgraph.Int64
		s.scheduler = lcmConfig()
	default:
		return sdSpec{}, fmt.Errorf("synth: unknown Stable Diffusion variant %q (have %v)", v, SDVariants)
	}
	return s, nil
}

func (o SDOptions) withDefaults() (SDOptions, error) {
	if o.SampleSize < 0 || o.Convs < 0 {
		return o, fmt.Errorf("synth: SDOptions %+v: SampleSize and Convs must not be negative", o)
	}
	if o.SampleSize == 0 {
		o.SampleSize = 8
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	return o, nil
}

// sdBuilder starts a graph whose weights come from a random stream of their own for each
// component, so that one model's weights do not depend on which others were built first.
func sdBuilder(component string, seed uint64) *builder {
	h := fnv.New64a()
	h.Write([]byte(component))
	return &builder{g: onnxgraph.New(component, Opset), rng: rand.New(rand.NewPCG(seed, h.Sum64()))}
}

// sdFile is one file of an export folder, relative to it.
type sdFile struct {
	path string
	data []byte
}

// WriteSD writes the export folder of variant v into dir (created if needed); the bytes are
// deterministic. The folder has the layout, file names, tensor names, element types and
// dynamic axes of a real diffusers/optimum ONNX export of that kind, with small random models
// (see the package comment): model_index.json, scheduler/, tokenizer/ (SDXL also
// tokenizer_2/), text_encoder/ (SDXL also text_encoder_2/), unet/, vae_decoder/, vae_encoder/
// and, where the real model has one, feature_extractor/. The models take any batch size,
// sequence length and latent size (a multiple of 8 pixels for the VAE encoder); SampleSize only
// sets the configs' sample_size. Files of the same names are overwritten; other files in dir
// are left alone. An unknown variant or negative options are an error, and nothing is written.
func WriteSD(dir string, v SDVariant, o SDOptions) error {
	files, err := sdFiles(v, o)
	if err != nil {
		return err
	}
	for _, f := range files {
		path := filepath.Join(dir, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
		if err := os.WriteFile(path, f.data, 0o644); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
	}
	return nil
}

// sdFiles builds every file of the folder in memory.
func sdFiles(v SDVariant, o SDOptions) ([]sdFile, error) {
	s, err := sdSpecOf(v)
	if err != nil {
		return nil, err
	}
	if o, err = o.withDefaults(); err != nil {
		return nil, err
	}
	var files []sdFile
	add := func(path string, data []byte, err error) error {
		if err != nil {
			return fmt.Errorf("synth: %s %s: %w", v, path, err)
		}
		files = append(files, sdFile{path, data})
		return nil
	}
	// model adds folder/model.onnx, its external data file if dataFile is set, and config.json.
	model := func(folder string, g *onnxgraph.Graph, dataFile string, config map[string]any) error {
		var m, data []byte
		var err error
		if dataFile == "" {
			m, err = g.Marshal()
		} else {
			m, data, err = g.MarshalExternal(dataFile, sdExternalThreshold)
		}
		if err := add(folder+"/model.onnx", m, err); err != nil {
			return err
		}
		if dataFile != "" {
			if err := add(folder+"/"+dataFile, data, nil); err != nil {
				return err
			}
		}
		c, err := jsonFile(config)
		return add(folder+"/config.json", c, err)
	}

	index, err := jsonFile(s.modelIndex())
	if err := add("model_index.json", index, err); err != nil {
		return nil, err
	}
	sched, err := jsonFile(s.scheduler)
	if err := add("scheduler/scheduler_config.json", sched, err); err != nil {
		return nil, err
	}
	if s.features {
		fe, err := jsonFile(preprocessorConfig())
		if err := add("feature_extractor/preprocessor_config.json", fe, err); err != nil {
			return nil, err
		}
	}
	tok := sdTokenizer()
	var empty sdEmptyPrompt
	for i, t := range s.texts {
		for _, f := range tok.files(t.pad) {
			if err := add(t.tokenizer+"/"+f.path, f.data, nil); err != nil {
				return nil, err
			}
		}
		w := newSDTextWeights(t, len(tok.vocab), o.Seed)
		empty.add(s, w, tok.emptyPrompt(t.pad))
		dataFile := ""
		if i == 0 {
			dataFile = s.textData
		}
		if err := model(t.folder, sdTextEncoder(s, w), dataFile, s.textConfig(t, tok)); err != nil {
			return nil, err
		}
	}
	if err := model("unet", sdUNet(s, o, empty), s.unetData, s.unetConfig(o)); err != nil {
		return nil, err
	}
	dec, enc := sdVAE(s, o.Seed)
	if err := model("vae_decoder", dec, "", s.vaeConfig(o)); err != nil {
		return nil, err
	}
	if err := model("vae_encoder", enc, "", s.vaeConfig(o)); err != nil {
		return nil, err
	}
	return files, nil
}

// sdExternalThreshold is the size from which an initializer goes to the external data file:
// onnx's default size_threshold.
const sdExternalThreshold = 1024

// floatIn declares a float input of type elem and returns its value as float32.
func (b *builder) floatIn(name string, elem onnxgraph.ElemType, dims ...onnxgraph.Dim) string {
	x := b.g.Input(name, elem, dims...)
	if elem == onnxgraph.Float32 {
		return x
	}
	return b.g.Op("Cast", []string{x}, onnxgraph.AttrInt("to", int64(onnxgraph.Float32)))
}

// floatOut makes the float32 value x the graph output name, of type elem.
func (b *builder) floatOut(name, x string, elem onnxgraph.ElemType, dims ...onnxgraph.Dim) {
	if elem == onnxgraph.Float32 {
		b.g.Node("Identity", []string{x}, []string{name})
	} else {
		b.g.Node("Cast", []string{x}, []string{name}, onnxgraph.AttrInt("to", int64(elem)))
	}
	b.g.Output(name, elem, dims...)
}
