package generation

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/fksteer/fksteer/sampler"
)

// The keys of the "parameters" chunk, as other diffusion tools (AUTOMATIC1111) name the
// settings they share with fksteer.
const (
	keySteps       = "Steps"
	keySampler     = "Sampler"
	keyEta         = "Eta"
	keyGuidance    = "CFG scale"
	keySize        = "Size"
	keyModel       = "Model"
	keyModelHash   = "Model hash"
	keyScheduler   = "Scheduler"
	keyRescale     = "CFG rescale"
	keyInit        = "Init image"
	keyInitHash    = "Init image hash"
	keyStrength    = "Denoising strength"
	keyClass       = "Class"
	keyMethod      = "Method"
	keyParticles   = "Particles"
	keyPotential   = "Potential"
	keyLambda      = "Lambda"
	keyResampling  = "Resampling"
	keyResampler   = "Resampler"
	keyBudget      = "Budget"
	keySearch      = "Search"
	keyReward      = "Reward"
	keyReferences  = "References"
	keySeed        = "Seed"
	keySelect      = "Select"
	keyParticle    = "Particle"
	keyRewardValue = "Reward value"
	keyRewardParts = "Reward parts"
	keyOCRText     = "OCR text"
)

// chunkKeys are every key Parameters writes: a ", " followed by one of them starts a pair,
// anything else is part of the value before it (a reward spec may hold ", ").
var chunkKeys = []string{keySteps, keySampler, keyEta, keyGuidance, keySize, keyModel, keyModelHash,
	keyScheduler, keyRescale, keyInit, keyInitHash, keyStrength, keyClass, keyMethod, keyParticles,
	keyPotential, keyLambda, keyResampling, keyResampler, keyBudget, keySearch, keyReward, keyReferences, keySeed, keySelect,
	keyParticle, keyRewardValue, keyRewardParts, keyOCRText}

// ParseParameters reads the spec of one image back from the "parameters" chunk fksteer wrote
// into it (Run.Parameters): the prompt, negative prompt and every setting, with Seed the image's
// own seed and one image. Model is the model's name as the chunk records it: a name Env
// resolves (glyphs, a configured or pulled model), or to be replaced by the model's path. What
// the chunk records about the model and files (hashes, size) is not part of a spec; regenerate
// checks it by comparing the new image's settings text with the chunk's.
func ParseParameters(text string) (Spec, error) {
	lines := strings.Split(text, "\n")
	if len(lines) < 2 {
		return Spec{}, fmt.Errorf("the parameters chunk has no settings line: it was not written by fksteer")
	}
	s := Spec{Prompt: lines[0], Images: 1}
	last := lines[len(lines)-1]
	if len(lines) > 2 {
		neg := strings.Join(lines[1:len(lines)-1], "\n")
		var ok bool
		if s.NegativePrompt, ok = strings.CutPrefix(neg, "Negative prompt: "); !ok {
			s.Prompt = strings.Join(lines[:len(lines)-1], "\n") // a prompt of several lines
		}
	}
	pairs, err := splitPairs(last)
	if err != nil {
		return Spec{}, err
	}
	var sd bool
	for _, p := range pairs {
		k, v := p[0], p[1]
		var err error
		switch k {
		case keySteps:
			s.Steps, err = strconv.Atoi(v)
		case keySampler:
			s.Sampler = v
		case keyEta:
			s.Eta, err = floatPtr(v)
		case keyGuidance:
			s.Guidance, err = floatPtr(v)
		case keySize:
			w, h, ok := strings.Cut(v, "x")
			if !ok {
				return Spec{}, fmt.Errorf("size %q is not WIDTHxHEIGHT", v)
			}
			if s.Width, err = strconv.Atoi(w); err == nil {
				s.Height, err = strconv.Atoi(h)
			}
		case keyModel:
			s.Model = v
		case keyScheduler:
			s.Scheduler, sd = v, true
		case keyRescale:
			s.GuidanceRescale, err = strconv.ParseFloat(v, 64)
		case keyInit:
			s.InitImage = v
		case keyStrength:
			s.Strength, err = strconv.ParseFloat(v, 64)
		case keyClass:
			var c int64
			c, err = strconv.ParseInt(v, 10, 64)
			s.Class = &c
		case keyMethod:
			s.Method = v
		case keyParticles:
			s.Particles, err = strconv.Atoi(v)
		case keyPotential:
			s.Potential = v
		case keyLambda:
			err = s.parseLambda(v)
		case keyResampling:
			err = s.parseResampling(v)
		case keyResampler:
			s.Resampler = v
		case keyBudget:
			s.Budget, err = strconv.Atoi(v)
		case keySearch:
			err = s.parseSearch(v)
		case keyReward:
			s.Reward = v
		case keyReferences:
			s.References = strings.Fields(v)
		case keySeed:
			s.Seed, err = strconv.ParseUint(v, 10, 64)
		case keySelect:
			s.Select = v
		}
		if err != nil {
			return Spec{}, fmt.Errorf("parameters chunk: %s: %q: %w", k, v, err)
		}
	}
	if !sd {
		// Only Stable Diffusion exports take a size; other models record their fixed one.
		s.Width, s.Height = 0, 0
	}
	if s.Budget > 0 && sampler.Method(s.Method).SizedByBudget() {
		s.Particles = 0 // the budget sized it, and sizes it again
	}
	return s, nil
}

// parseSearch reads the "Search" value settingPairs writes: "key=value" pairs separated by
// spaces, the search settings' keys.
func (s *Spec) parseSearch(v string) error {
	for _, f := range strings.Fields(v) {
		k, val, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("%q is not key=value", f)
		}
		var err error
		switch k {
		case "candidates":
			s.Candidates, err = strconv.Atoi(val)
		case "alpha":
			s.Alpha, err = strconv.ParseFloat(val, 64)
		case "beam-every":
			s.BeamEvery, err = strconv.Atoi(val)
		case "neighbours":
			s.Neighbours, err = strconv.Atoi(val)
		case "rounds":
			s.Rounds, err = strconv.Atoi(val)
		case "noise-scale":
			s.NoiseScale, err = strconv.ParseFloat(val, 64)
		case "iterations":
			s.Iterations, err = strconv.Atoi(val)
		case "widening":
			s.Widening, err = strconv.ParseFloat(val, 64)
		case "exploration":
			s.Exploration, err = strconv.ParseFloat(val, 64)
		default:
			return fmt.Errorf("unknown search setting %q", k)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}

// splitPairs splits "Key: value, Key: value" at the separators followed by a known key.
func splitPairs(line string) ([][2]string, error) {
	var pairs [][2]string
	for line != "" {
		k, rest, ok := strings.Cut(line, ": ")
		if !ok || !slices.Contains(chunkKeys, k) {
			return nil, fmt.Errorf("parameters chunk: %q is not a setting fksteer writes", clip(line))
		}
		end := len(rest)
		for i := 0; i < len(rest); {
			j := strings.Index(rest[i:], ", ")
			if j < 0 {
				break
			}
			next, _, found := strings.Cut(rest[i+j+2:], ": ")
			if found && slices.Contains(chunkKeys, next) {
				end = i + j
				break
			}
			i += j + 2
		}
		pairs = append(pairs, [2]string{k, rest[:end]})
		line = strings.TrimPrefix(rest[end:], ", ")
	}
	return pairs, nil
}

func floatPtr(v string) (*float64, error) {
	f, err := strconv.ParseFloat(v, 64)
	return &f, err
}

// parseLambda reads lambdaString: "10" or "1->10 linear".
func (s *Spec) parseLambda(v string) error {
	from, rest, ramped := strings.Cut(v, "->")
	if !ramped {
		var err error
		s.Lambda, err = floatPtr(v)
		return err
	}
	val, ramp, ok := strings.Cut(rest, " ")
	if !ok {
		return fmt.Errorf("want START->LAMBDA RAMP")
	}
	var err error
	if s.LambdaStart, err = strconv.ParseFloat(from, 64); err != nil {
		return err
	}
	s.LambdaRamp = ramp
	s.Lambda, err = floatPtr(val)
	return err
}

// parseResampling reads resamplingString: "every 1 from 1 to 3[ when ESS < 0.5 K]".
func (s *Spec) parseResampling(v string) error {
	var every, start, end int
	sched, ess, adaptive := strings.Cut(v, " when ESS < ")
	if _, err := fmt.Sscanf(sched, "every %d from %d to %d", &every, &start, &end); err != nil {
		return err
	}
	s.ResampleEvery, s.ResampleStart, s.ResampleEnd = every, &start, &end
	if adaptive {
		t, ok := strings.CutSuffix(ess, " K")
		if !ok {
			return fmt.Errorf("want ESS < FRACTION K")
		}
		var err error
		s.ESSThreshold, err = strconv.ParseFloat(t, 64)
		return err
	}
	return nil
}
