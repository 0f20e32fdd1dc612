package schedule

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Reference values below were computed separately in plain Python (float64, no numpy), from
// beta = linspace(sqrt(0.00085), sqrt(0.012), 1000)^2 and abar = cumprod(1 - beta), with each
// grid written out by hand from diffusers' set_timesteps (see the comment at each).
const (
	sdSigma941 = 10.42504083510693   // DPM-Solver leading, 20 steps, offset 1: first timestep
	sdSigma48  = 0.22040974855427967 // ... and last
	sdSigma50  = 0.22558194451744978 // DPM-Solver linspace, 20 steps: last timestep
)

// Real scheduler_config.json files, as the model repositories ship them.
const (
	// runwayml/stable-diffusion-v1-5
	sd15Config = `{"_class_name":"PNDMScheduler","_diffusers_version":"0.6.0","beta_end":0.012,"beta_schedule":"scaled_linear","beta_start":0.00085,"num_train_timesteps":1000,"set_alpha_to_one":false,"skip_prk_steps":true,"steps_offset":1,"trained_betas":null,"clip_sample":false}`
	// stabilityai/stable-diffusion-2-1 (768 px, v-prediction)
	sd21Config = `{"_class_name": "DDIMScheduler", "_diffusers_version": "0.8.0", "beta_end": 0.012,
		"beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false,
		"num_train_timesteps": 1000, "prediction_type": "v_prediction", "set_alpha_to_one": false,
		"skip_prk_steps": true, "steps_offset": 1, "trained_betas": null}`
	// stabilityai/sd-turbo
	sdTurboConfig = `{"_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.24.0.dev0",
		"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false,
		"interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
		"sample_max_value": 1.0, "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1,
		"timestep_spacing": "trailing", "timestep_type": "discrete", "trained_betas": null,
		"use_karras_sigmas": false}`
	// stabilityai/stable-diffusion-xl-base-1.0
	sdxlConfig = `{"_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.19.0.dev0",
		"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false,
		"interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
		"sample_max_value": 1.0, "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1,
		"timestep_spacing": "leading", "trained_betas": null, "use_karras_sigmas": false}`
	// SimianLuo/LCM_Dreamshaper_v7
	lcmConfig = `{"_class_name": "LCMScheduler", "_diffusers_version": "0.22.0.dev0", "beta_end": 0.012,
		"beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false,
		"clip_sample_range": 1.0, "dynamic_thresholding_ratio": 0.995, "num_train_timesteps": 1000,
		"original_inference_steps": 50, "prediction_type": "epsilon", "rescale_betas_zero_snr": false,
		"sample_max_value": 1.0, "set_alpha_to_one": true, "steps_offset": 1, "thresholding": false,
		"timestep_scaling": 10.0, "timestep_spacing": "leading", "trained_betas": null}`
	// DPMSolverMultistepScheduler.from_config(sd15).save_config(...) with diffusers 0.21: note
	// the -Infinity, which Python's json writes and JSON does not allow.
	dpmConfig = `{"_class_name": "DPMSolverMultistepScheduler", "_diffusers_version": "0.21.0",
		"algorithm_type": "dpmsolver++", "beta_end": 0.012, "beta_schedule": "scaled_linear",
		"beta_start": 0.00085, "clip_sample": false, "dynamic_thresholding_ratio": 0.995,
		"euler_at_final": false, "lambda_min_clipped": -Infinity, "lower_order_final": true,
		"num_train_timesteps": 1000, "prediction_type": "epsilon", "sample_max_value": 1.0,
		"set_alpha_to_one": false, "skip_prk_steps": true, "solver_order": 2, "solver_type": "midpoint",
		"steps_offset": 1, "thresholding": false, "timestep_spacing": "leading", "trained_betas": null,
		"use_karras_sigmas": false, "use_lu_lambdas": false, "variance_type": null}`
)

func mustParse(t *testing.T, config string) Scheduler {
	t.Helper()
	s, err := ParseScheduler([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustLevels(t *testing.T, s Scheduler, n int) []Level {
	t.Helper()
	levels, err := s.Levels(n)
	if err != nil {
		t.Fatalf("%s Levels(%d): %v", s.Kind, n, err)
	}
	if len(levels) != n+1 {
		t.Fatalf("%s Levels(%d): %d levels, want %d", s.Kind, n, len(levels), n+1)
	}
	for i, l := range levels {
		if v := l.Alpha*l.Alpha + l.Sigma*l.Sigma; math.Abs(v-1) > 1e-12 {
			t.Errorf("%s level %d: Alpha^2 + Sigma^2 = %v, want 1", s.Kind, i, v)
		}
	}
	if last := levels[n].Time; last != -1 {
		t.Errorf("%s: last level Time %v, want -1", s.Kind, last)
	}
	return levels
}

func times(levels []Level) []float64 {
	ts := make([]float64, len(levels)-1)
	for i := range ts {
		ts[i] = levels[i].Time
	}
	return ts
}

// near reports whether got is within a relative 1e-12 of want (absolute near zero).
func near(got, want float64) bool {
	return math.Abs(got-want) <= 1e-12*math.Max(1, math.Abs(want))
}

func TestParseSchedulerKind(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  SchedulerKind
	}{
		{[]string{"ddim", "DDIMScheduler", "DDIM", " ddimscheduler "}, DDIMScheduler},
		{[]string{"ddpm", "DDPMScheduler"}, DDPMScheduler},
		{[]string{"pndm", "PNDMScheduler"}, PNDMScheduler},
		{[]string{"euler", "EulerDiscreteScheduler"}, EulerScheduler},
		{[]string{"euler-a", "EulerAncestralDiscreteScheduler"}, EulerAncestralScheduler},
		{[]string{"dpm++2m", "DPMSolverMultistepScheduler"}, DPMSolverScheduler},
		{[]string{"lcm", "LCMScheduler"}, LCMScheduler},
	} {
		for _, name := range tc.names {
			if got, err := ParseSchedulerKind(name); got != tc.want || err != nil {
				t.Errorf("ParseSchedulerKind(%q) = %q, %v; want %q", name, got, err, tc.want)
			}
		}
	}
	for _, bad := range []string{"LMSDiscreteScheduler", "UniPCMultistepScheduler", "", "dpm++"} {
		_, err := ParseSchedulerKind(bad)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("unknown scheduler %q", bad)) ||
			!strings.Contains(err.Error(), "valid: ddim, ddpm, pndm, euler, euler-a, dpm++2m, lcm") {
			t.Errorf("ParseSchedulerKind(%q) error = %v, want one naming the value and the valid names", bad, err)
		}
	}
}

// SD 1.5 ships PNDM; fksteer runs it as DDIM (eta 0) on DDIM's grid: 981, 961, ..., 1 for 50
// steps (arange(50)*20 reversed, plus steps_offset 1), ending at abar_0 (set_alpha_to_one false).
func TestParseSchedulerSD15(t *testing.T) {
	s := mustParse(t, sd15Config)
	if s.Kind != PNDMScheduler || s.Class != "PNDMScheduler" || s.Prediction != "epsilon" {
		t.Errorf("Kind %q Class %q Prediction %q", s.Kind, s.Class, s.Prediction)
	}
	want := DefaultSD()
	if d := s.Discrete; d.TrainSteps != want.TrainSteps || d.BetaStart != want.BetaStart || d.BetaEnd != want.BetaEnd ||
		d.BetaSchedule != want.BetaSchedule || d.Spacing != want.Spacing || d.StepsOffset != want.StepsOffset ||
		d.SetAlphaToOne || d.Karras || d.TrainedBetas != nil || d.RescaleZeroSNR {
		t.Errorf("Discrete = %+v, want DefaultSD() = %+v", d, want)
	}
	if rule, eta := s.Rule(); rule != "ddim" || eta != 0 {
		t.Errorf("Rule() = %q, %v; want ddim, 0", rule, eta)
	}
	levels := mustLevels(t, s, 50)
	for i, tm := range times(levels) {
		if want := float64(981 - 20*i); tm != want {
			t.Errorf("level %d: Time %v, want %v", i, tm, want)
		}
	}
	if a2 := levels[0].Alpha * levels[0].Alpha; !near(a2, sdAbar981) {
		t.Errorf("first abar %.15g, want %.15g", a2, sdAbar981)
	}
	if a2 := levels[50].Alpha * levels[50].Alpha; !near(a2, 0.99915) {
		t.Errorf("final abar %.15g, want abar_0 = 0.99915 (1 - 0.00085)", a2)
	}
	abar, err := s.AlphasCumprod()
	if err != nil {
		t.Fatal(err)
	}
	if !near(abar[0], 0.99915) || math.Abs(abar[999]-0.00466) > 0.000005 {
		t.Errorf("abar[0] = %.15g, abar[999] = %.15g; want 0.99915 and 0.00466", abar[0], abar[999])
	}
}

func TestParseSchedulerSD21(t *testing.T) {
	s := mustParse(t, sd21Config)
	if s.Kind != DDIMScheduler || s.Prediction != "v_prediction" || s.SetAlphaToOne || s.Spacing != Leading || s.StepsOffset != 1 {
		t.Errorf("got %+v", s)
	}
	levels := mustLevels(t, s, 50)
	want, err := DefaultSD().Levels(50)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(levels, want) {
		t.Errorf("SD 2.1 DDIM grid differs from DefaultSD().Levels(50)")
	}
}

// SD-Turbo: trailing spacing, round(arange(1000, 0, -1000/n)) - 1.
func TestParseSchedulerSDTurbo(t *testing.T) {
	s := mustParse(t, sdTurboConfig)
	if s.Kind != EulerScheduler || s.Spacing != Trailing || !s.FinalSigmasZero {
		t.Errorf("got %+v", s)
	}
	if rule, eta := s.Rule(); rule != "euler" || eta != 0 {
		t.Errorf("Rule() = %q, %v", rule, eta)
	}
	one := mustLevels(t, s, 1)
	if one[0].Time != 999 || !near(sigmaOf(one[0]), sdSigmaMax) || !one[1].Clean() || one[1].Alpha != 1 {
		t.Errorf("1 step: %+v, want Time 999 at sigma %v, then clean", one, sdSigmaMax)
	}
	four := mustLevels(t, s, 4)
	abar := sdAbar(t)
	for i, tm := range []int{999, 749, 499, 249} { // 1000, 750, 500, 250, minus 1
		l := four[i]
		if l.Time != float64(tm) || !near(sigmaOf(l), math.Sqrt((1-abar[tm])/abar[tm])) {
			t.Errorf("4 steps, level %d: Time %v sigma %v, want %d and sigma(%d)", i, l.Time, sigmaOf(l), tm, tm)
		}
	}
	if !four[4].Clean() {
		t.Errorf("4 steps: last level %+v, want clean", four[4])
	}
}

// SDXL base: Euler with leading spacing and offset 1, 981..1 for 50 steps, then sigma 0.
func TestParseSchedulerSDXL(t *testing.T) {
	s := mustParse(t, sdxlConfig)
	if s.Kind != EulerScheduler || s.Spacing != Leading || s.StepsOffset != 1 || s.Karras {
		t.Errorf("got %+v", s)
	}
	levels := mustLevels(t, s, 50)
	if levels[0].Time != 981 || !near(sigmaOf(levels[0]), sdSigma981) || levels[49].Time != 1 || !levels[50].Clean() {
		t.Errorf("levels %+v ... %+v, want Time 981 at sigma %v ... clean", levels[0], levels[50], sdSigma981)
	}
}

// EulerDiscreteScheduler's own default spacing is linspace, whose first timestep is 999, where
// sigma is sqrt((1-abar_999)/abar_999) = 14.6146, diffusers' sigma_max (init_noise_sigma).
func TestEulerSigmaMax(t *testing.T) {
	s := mustParse(t, `{"_class_name": "EulerDiscreteScheduler", "beta_schedule": "scaled_linear",
		"beta_start": 0.00085, "beta_end": 0.012}`)
	if s.Spacing != Linspace || s.StepsOffset != 0 {
		t.Fatalf("defaults: spacing %q offset %d, want linspace and 0", s.Spacing, s.StepsOffset)
	}
	levels := mustLevels(t, s, 30)
	if got := sigmaOf(levels[0]); levels[0].Time != 999 || math.Abs(got-14.6146) > 1e-4 {
		t.Errorf("first level Time %v sigma %.6f, want 999 and 14.6146", levels[0].Time, got)
	}
	if levels[29].Time != 0 || !near(sigmaOf(levels[29]), sdSigmaMin) {
		t.Errorf("last evaluated level %+v, want Time 0 at sigma %v", levels[29], sdSigmaMin)
	}

	s.FinalSigmasZero = false // final_sigmas_type "sigma_min"
	levels = mustLevels(t, s, 30)
	if last := levels[30]; last.Clean() || !near(sigmaOf(last), sdSigmaMin) {
		t.Errorf("sigma_min: last level %+v, want sigma %v", last, sdSigmaMin)
	}
}

// EulerAncestralDiscreteScheduler has neither use_karras_sigmas nor final_sigmas_type.
func TestEulerAncestralIgnoresKarras(t *testing.T) {
	s := mustParse(t, strings.Replace(sdxlConfig, "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", 1))
	if rule, eta := s.Rule(); s.Kind != EulerAncestralScheduler || rule != "euler-a" || eta != 1 {
		t.Fatalf("Kind %q Rule %q %v", s.Kind, rule, eta)
	}
	plain := mustLevels(t, s, 20)
	s.Karras, s.FinalSigmasZero = true, false
	if got := mustLevels(t, s, 20); !slices.Equal(got, plain) {
		t.Errorf("euler-a with Karras and sigma_min changed its grid")
	}
}

func TestDDPMLevels(t *testing.T) {
	s := mustParse(t, strings.Replace(sd21Config, "DDIMScheduler", "DDPMScheduler", 1))
	if rule, eta := s.Rule(); s.Kind != DDPMScheduler || rule != "ddpm" || eta != 1 {
		t.Fatalf("Kind %q Rule %q %v", s.Kind, rule, eta)
	}
	levels := mustLevels(t, s, 50)
	ddim, err := DefaultSD().Levels(50)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(levels[:50], ddim[:50]) {
		t.Errorf("DDPM timesteps differ from DDIM's")
	}
	if levels[50] != (Level{Time: -1, Alpha: 1, Sigma: 0}) {
		t.Errorf("DDPM last level %+v, want clean whatever set_alpha_to_one says", levels[50])
	}
}

func TestDPMSolverLevels(t *testing.T) {
	s := mustParse(t, dpmConfig)
	if rule, eta := s.Rule(); s.Kind != DPMSolverScheduler || rule != "dpm++2m" || eta != 0 || !s.FinalSigmasZero {
		t.Fatalf("Kind %q Rule %q %v, final zero %v", s.Kind, rule, eta, s.FinalSigmasZero)
	}

	// leading, offset 1, 20 steps: step ratio 1000 // 21 = 47; arange(21)*47 = 0..940 reversed,
	// the last (0) dropped, plus 1: 941, 894, ..., 48.
	levels := mustLevels(t, s, 20)
	var want []float64
	for i := range 20 {
		want = append(want, float64(941-47*i))
	}
	if got := times(levels); !slices.Equal(got, want) {
		t.Errorf("leading: %v\nwant %v", got, want)
	}
	if !near(sigmaOf(levels[0]), sdSigma941) || !near(sigmaOf(levels[19]), sdSigma48) || !levels[20].Clean() {
		t.Errorf("leading sigmas %v .. %v, then %+v; want %v .. %v, then clean",
			sigmaOf(levels[0]), sigmaOf(levels[19]), levels[20], sdSigma941, sdSigma48)
	}

	// linspace, 20 steps: linspace(0, 999, 21) = 0, 49.95, ..., 999, rounded (499.5 to even 500),
	// reversed, the last dropped: 999, 949, 899, ..., 549, 500, 450, ..., 100, 50.
	s.Spacing = Linspace
	levels = mustLevels(t, s, 20)
	want = []float64{999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250, 200, 150, 100, 50}
	if got := times(levels); !slices.Equal(got, want) {
		t.Errorf("linspace: %v\nwant %v", got, want)
	}
	if !near(sigmaOf(levels[0]), sdSigmaMax) || !near(sigmaOf(levels[19]), sdSigma50) {
		t.Errorf("linspace sigmas %v .. %v, want %v .. %v", sigmaOf(levels[0]), sigmaOf(levels[19]), sdSigmaMax, sdSigma50)
	}

	// trailing as everywhere else.
	s.Spacing = Trailing
	if got := times(mustLevels(t, s, 4)); !slices.Equal(got, []float64{999, 749, 499, 249}) {
		t.Errorf("trailing: %v", got)
	}

	// final_sigmas_type "sigma_min": the last level is the training table's sigma(0).
	s.FinalSigmasZero = false
	levels = mustLevels(t, s, 4)
	if last := levels[4]; !near(sigmaOf(last), sdSigmaMin) || last.Clean() {
		t.Errorf("sigma_min final level %+v, want sigma %v", last, sdSigmaMin)
	}

	// Too many steps repeat timesteps: linspace(0, 999, 1001) rounds several to the same value.
	s.Spacing = Linspace
	if _, err := s.Levels(1000); err == nil || !strings.Contains(err.Error(), "distinct") {
		t.Errorf("1000 linspace steps: error %v, want repeated timesteps refused", err)
	}
	s.Spacing = Leading
	s.StepsOffset = 60
	if _, err := s.Levels(20); err == nil { // 940 + 60 = 1000
		t.Error("leading offset past the table: no error")
	}
}

// DPM-Solver's Karras sigmas span the full training table, sigma(999) = 14.6146 down to
// sigma(0) = 0.029167, whatever the spacing; each Time is round(_sigma_to_t(sigma)).
func TestDPMSolverKarras(t *testing.T) {
	s := mustParse(t, strings.Replace(dpmConfig, `"use_karras_sigmas": false`, `"use_karras_sigmas": true`, 1))
	if !s.Karras || s.Spacing != Leading {
		t.Fatalf("got %+v", s)
	}
	levels := mustLevels(t, s, 10)
	// (14.6146^(1/7) + i/9 (0.029167^(1/7) - 14.6146^(1/7)))^7, mapped back to timesteps by
	// log-sigma interpolation in plain Python: 999, 916.28, 815.04, 687.15, 523.20, 327.15,
	// 145.94, 40.86, 6.73, 0; rounded:
	wantTimes := []float64{999, 916, 815, 687, 523, 327, 146, 41, 7, 0}
	wantSigmas := []float64{14.614641229333643, 9.102928134047657, 5.478391986442962, 3.168603072959619,
		1.7494170492511885, 0.9140722650309668, 0.44691820937343973, 0.20139829978031268,
		0.08191023832026934, 0.02916715815172038}
	if got := times(levels); !slices.Equal(got, wantTimes) {
		t.Errorf("Karras times %v\nwant %v", got, wantTimes)
	}
	for i, w := range wantSigmas {
		if got := sigmaOf(levels[i]); math.Abs(got-w) > 1e-9*w {
			t.Errorf("Karras level %d: sigma %.15g, want %.15g", i, got, w)
		}
	}
	if !levels[10].Clean() {
		t.Errorf("last level %+v, want clean", levels[10])
	}

	// Euler's Karras range is the spaced one instead: leading 981..1 (50 steps) narrows it.
	e := s.With(EulerScheduler)
	if got := sigmaOf(mustLevels(t, e, 50)[0]); !near(got, sdSigma981) {
		t.Errorf("Euler Karras first sigma %v, want sigma(981) = %v", got, sdSigma981)
	}
}

// LCM: k = 1000 // 50 = 20, distillation timesteps 19, 39, ..., 999; reversed and sampled at
// floor(linspace(0, 50, n, endpoint=False)).
func TestLCMLevels(t *testing.T) {
	s := mustParse(t, lcmConfig)
	if rule, eta := s.Rule(); s.Kind != LCMScheduler || rule != "lcm" || eta != 0 || s.OriginalSteps != 50 || s.TimestepScaling != 10 {
		t.Fatalf("got %+v, Rule %q %v", s, rule, eta)
	}
	for _, tc := range []struct {
		n    int
		want []float64
	}{
		{1, []float64{999}},
		{4, []float64{999, 759, 499, 259}},                             // indices 0, 12, 25, 37
		{8, []float64{999, 879, 759, 639, 499, 379, 259, 139}},         // 0, 6, 12, 18, 25, 31, 37, 43
		{2, []float64{999, 499}},                                       // 0, 25
		{3, []float64{999, 679, 339}},                                  // 0, 16, 33
		{50, append([]float64{999, 979, 959}, make([]float64, 47)...)}, // checked below
	} {
		levels := mustLevels(t, s, tc.n)
		got := times(levels)
		if tc.n == 50 {
			for i := range tc.want {
				tc.want[i] = float64(999 - 20*i)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%d steps: %v, want %v", tc.n, got, tc.want)
		}
		if levels[tc.n] != (Level{Time: -1, Alpha: 1, Sigma: 0}) {
			t.Errorf("%d steps: last level %+v, want clean data", tc.n, levels[tc.n])
		}
		abar := sdAbar(t)
		if a2 := levels[0].Alpha * levels[0].Alpha; !near(a2, abar[999]) {
			t.Errorf("%d steps: first abar %v, want abar[999]", tc.n, a2)
		}
	}
	if _, err := s.Levels(51); err == nil || !strings.Contains(err.Error(), "original_inference_steps") {
		t.Errorf("51 steps: error %v, want one naming original_inference_steps", err)
	}

	// t = 999: scaled 9990, c_skip = 0.25/(9990^2 + 0.25), c_out = 9990/sqrt(9990^2 + 0.25).
	cSkip, cOut := s.LCMBoundary(999)
	if !near(cSkip, 2.5050075037374525e-09) || !near(cOut, 0.9999999987474963) {
		t.Errorf("LCMBoundary(999) = %v, %v", cSkip, cOut)
	}
	if cSkip, cOut := s.LCMBoundary(0); cSkip != 1 || cOut != 0 {
		t.Errorf("LCMBoundary(0) = %v, %v; want 1, 0", cSkip, cOut)
	}
	s.TimestepScaling = 0.1 // scaled = t/10 at t = 5: 0.5, c_skip = 0.25/0.5 = 0.5, c_out = 0.5/sqrt(0.5)
	if cSkip, cOut := s.LCMBoundary(5); !near(cSkip, 0.5) || !near(cOut, math.Sqrt(0.5)) {
		t.Errorf("LCMBoundary(5) with scaling 0.1 = %v, %v; want 0.5, %v", cSkip, cOut, math.Sqrt(0.5))
	}
}

// rescale_zero_terminal_snr keeps sqrt(abar_0), sends sqrt(abar_999) to 0 and maps linearly in
// between: sqrt(abar'_t) = (sqrt(abar_t) - sqrt(abar_999)) * sqrt(abar_0) / (sqrt(abar_0) - sqrt(abar_999)).
func TestRescaleZeroSNR(t *testing.T) {
	d := DefaultSD()
	d.RescaleZeroSNR = true
	abar, err := d.AlphasCumprod()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		t    int
		want float64
	}{{0, 0.99915}, {500, 0.24101878275731575}, {998, 1.967888056621291e-07}} {
		if got := abar[tc.t]; math.Abs(got-tc.want) > 1e-9*tc.want {
			t.Errorf("abar'[%d] = %.15g, want %.15g", tc.t, got, tc.want)
		}
	}
	if abar[999] != 0 {
		t.Errorf("abar'[999] = %v, want exactly 0", abar[999])
	}

	config := strings.Replace(sd21Config, `"trained_betas": null`,
		`"trained_betas": null, "rescale_betas_zero_snr": true, "timestep_spacing": "trailing"`, 1)
	s := mustParse(t, config)
	if !s.RescaleZeroSNR || s.Prediction != "v_prediction" {
		t.Fatalf("got %+v", s)
	}
	// DDIM keeps abar 0: the first level is pure noise.
	if first := mustLevels(t, s, 4)[0]; first != (Level{Time: 999, Alpha: 0, Sigma: 1}) {
		t.Errorf("DDIM zero-SNR first level %+v, want pure noise at 999", first)
	}
	// Euler and DPM-Solver use abar = 2^-24 there: sigma = sqrt((1 - 2^-24) / 2^-24) = sqrt(2^24 - 1).
	for _, kind := range []SchedulerKind{EulerScheduler, EulerAncestralScheduler, DPMSolverScheduler} {
		first := mustLevels(t, s.With(kind), 4)[0]
		if want := math.Sqrt(1<<24 - 1); first.Time != 999 || !near(sigmaOf(first), want) {
			t.Errorf("%s zero-SNR first level %+v: sigma %v, want %v", kind, first, sigmaOf(first), want)
		}
	}
	// An epsilon model cannot be sampled from abar 0.
	s.Prediction = "epsilon"
	if _, err := s.Levels(4); err == nil || !strings.Contains(err.Error(), "v_prediction") {
		t.Errorf("zero SNR with epsilon: error %v", err)
	}
	if _, err := s.With(EulerScheduler).Levels(4); err != nil {
		t.Errorf("Euler zero SNR with epsilon: %v", err)
	}
	// PNDM has no rescale_betas_zero_snr.
	if first := mustLevels(t, s.With(PNDMScheduler), 4)[0]; !near(first.Alpha*first.Alpha, sdAbar999) {
		t.Errorf("PNDM first level %+v, want the unrescaled abar[999]", first)
	}
}

// trained_betas replaces the range: with betas 0.1, 0.2, 0.3, 0.4, abar = 0.9, 0.72, 0.504, 0.3024.
// DDIM leading, 2 steps: arange(2) * (4//2) = 0, 2, reversed: 2, 0; then abar 1 (DDIM's default
// set_alpha_to_one true).
func TestTrainedBetas(t *testing.T) {
	s := mustParse(t, `{"_class_name": "DDIMScheduler", "clip_sample": false, "num_train_timesteps": 4,
		"beta_schedule": "no such schedule", "trained_betas": [0.1, 0.2, 0.3, 0.4]}`)
	levels := mustLevels(t, s, 2)
	want := []struct{ time, abar float64 }{{2, 0.504}, {0, 0.9}, {-1, 1}}
	for i, w := range want {
		if l := levels[i]; l.Time != w.time || !near(l.Alpha*l.Alpha, w.abar) {
			t.Errorf("level %d: %+v, want Time %v abar %v", i, l, w.time, w.abar)
		}
	}
	_, err := ParseScheduler([]byte(`{"_class_name": "EulerDiscreteScheduler", "trained_betas": [0.1, 0.2]}`))
	if err == nil || !strings.Contains(err.Error(), "2 trained betas for 1000 training steps") {
		t.Errorf("2 betas for 1000 steps: error %v", err)
	}
}

// Each class's defaults for keys a file leaves out.
func TestParseSchedulerDefaults(t *testing.T) {
	for _, tc := range []struct {
		class      string
		spacing    Spacing
		alphaToOne bool
		schedule   BetaSchedule
		betaStart  float64
	}{
		{"DDIMScheduler", Leading, true, Linear, 0.0001},
		{"DDPMScheduler", Leading, false, Linear, 0.0001},
		{"PNDMScheduler", Leading, false, Linear, 0.0001},
		{"EulerDiscreteScheduler", Linspace, false, Linear, 0.0001},
		{"EulerAncestralDiscreteScheduler", Linspace, false, Linear, 0.0001},
		{"DPMSolverMultistepScheduler", Linspace, false, Linear, 0.0001},
		{"LCMScheduler", Leading, true, ScaledLinear, 0.00085},
	} {
		s := mustParse(t, `{"_class_name": "`+tc.class+`", "clip_sample": false}`)
		if s.Spacing != tc.spacing || s.SetAlphaToOne != tc.alphaToOne || s.BetaSchedule != tc.schedule ||
			s.BetaStart != tc.betaStart || s.TrainSteps != 1000 || s.StepsOffset != 0 || s.Prediction != "epsilon" ||
			!s.FinalSigmasZero || s.OriginalSteps != 50 || s.TimestepScaling != 10 || s.Karras {
			t.Errorf("%s defaults: %+v", tc.class, s)
		}
	}
}

func TestParseSchedulerUnsupportedClass(t *testing.T) {
	config := `{"_class_name": "LMSDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
		"beta_start": 0.00085, "num_train_timesteps": 1000, "steps_offset": 1, "prediction_type": "v_prediction"}`
	s, err := ParseScheduler([]byte(config))
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "LMSDiscreteScheduler") ||
		!strings.Contains(err.Error(), "--scheduler") || !strings.Contains(err.Error(), "euler-a") {
		t.Fatalf("error = %v, want ErrUnsupported naming the class and --scheduler", err)
	}
	if s.Kind != "" || s.Class != "LMSDiscreteScheduler" || s.BetaSchedule != ScaledLinear || s.Prediction != "v_prediction" {
		t.Errorf("partial scheduler %+v", s)
	}
	if _, err := s.Levels(10); err == nil || !strings.Contains(err.Error(), "no kind") {
		t.Errorf("Levels without a kind: error %v", err)
	}
	// The file left out timestep_spacing: each kind's own default applies.
	if e := s.With(EulerScheduler); e.Spacing != Linspace || e.StepsOffset != 1 || e.BetaStart != 0.00085 {
		t.Errorf("With(euler) = %+v, want linspace spacing and the file's betas", e)
	}
	if d := s.With(DDIMScheduler); d.Spacing != Leading || !d.SetAlphaToOne {
		t.Errorf("With(ddim) = %+v, want DDIM's leading spacing and set_alpha_to_one true", d)
	}
	if times := times(mustLevels(t, s.With(DDIMScheduler), 10)); times[0] != 901 {
		t.Errorf("With(ddim) times %v, want leading with offset 1 from 901", times)
	}

	_, err = ParseScheduler([]byte(`{"beta_schedule": "linear"}`))
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "_class_name") {
		t.Errorf("no _class_name: error %v", err)
	}
}

func TestParseSchedulerUnsupportedSettings(t *testing.T) {
	for _, tc := range []struct {
		class, keys, want string
	}{
		{"DDIMScheduler", `"thresholding": true, "clip_sample": false`, "thresholding true"},
		{"DDIMScheduler", `"clip_sample": true`, "clip_sample true"},
		{"DDIMScheduler", `"prediction_type": "epsilon"`, "clip_sample left out, which DDIMScheduler takes as true"},
		{"DDPMScheduler", `"clip_sample": false, "variance_type": "fixed_large"`, `variance_type "fixed_large"`},
		{"LCMScheduler", `"clip_sample": true`, "clip_sample true"},
		{"DPMSolverMultistepScheduler", `"algorithm_type": "sde-dpmsolver++"`, `algorithm_type "sde-dpmsolver++"`},
		{"DPMSolverMultistepScheduler", `"solver_order": 3`, "solver_order 3"},
		{"DPMSolverMultistepScheduler", `"solver_type": "heun"`, `solver_type "heun"`},
		{"DPMSolverMultistepScheduler", `"lower_order_final": false`, "lower_order_final false"},
		{"DPMSolverMultistepScheduler", `"euler_at_final": true`, "euler_at_final true"},
		{"DPMSolverMultistepScheduler", `"use_lu_lambdas": true`, "use_lu_lambdas true"},
		{"DPMSolverMultistepScheduler", `"variance_type": "learned_range"`, `variance_type "learned_range"`},
		{"DPMSolverMultistepScheduler", `"thresholding": true`, "thresholding true"},
		// SD's lambda at t = 999 is log(sqrt(abar/(1-abar))) = -2.68: -2 clips the noisiest timesteps.
		{"DPMSolverMultistepScheduler", `"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "lambda_min_clipped": -2`, "lambda_min_clipped -2 clips"},
		{"EulerDiscreteScheduler", `"interpolation_type": "log_linear"`, `interpolation_type "log_linear"`},
		{"EulerDiscreteScheduler", `"use_exponential_sigmas": true`, "use_exponential_sigmas true"},
		{"EulerDiscreteScheduler", `"use_beta_sigmas": true`, "use_beta_sigmas true"},
		{"EulerDiscreteScheduler", `"timestep_type": "continuous"`, `timestep_type "continuous"`},
	} {
		config := `{"_class_name": "` + tc.class + `", ` + tc.keys + `}`
		s, err := ParseScheduler([]byte(config))
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.want) ||
			!strings.Contains(err.Error(), tc.class) || !strings.Contains(err.Error(), "--scheduler") {
			t.Errorf("%s: error = %v, want ErrUnsupported containing %q and --scheduler", config, err, tc.want)
			continue
		}
		// The rejected setting is not held, so the same kind is runnable once chosen.
		if _, err := s.With(s.Kind).Levels(4); err != nil || s.Kind == "" {
			t.Errorf("%s: Kind %q, Levels: %v", config, s.Kind, err)
		}
	}

	// Keys a class does not have are ignored, as diffusers ignores them: PNDM has no clip_sample
	// nor thresholding, DDIM no interpolation_type, Euler no solver_order.
	for _, config := range []string{
		`{"_class_name": "PNDMScheduler", "clip_sample": true, "thresholding": true}`,
		`{"_class_name": "DDIMScheduler", "clip_sample": false, "interpolation_type": "log_linear"}`,
		`{"_class_name": "EulerDiscreteScheduler", "solver_order": 3, "clip_sample": true}`,
		`{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "deis", "solver_type": "bh2", "lambda_min_clipped": -5.1}`,
	} {
		if _, err := ParseScheduler([]byte(config)); err != nil {
			t.Errorf("%s: %v", config, err)
		}
	}
}

func TestParseSchedulerBadValues(t *testing.T) {
	for _, tc := range []struct{ config, want string }{
		{`{"_class_name": "DDIMScheduler", "steps_offset": "1"}`, `"steps_offset": want an integer, got "1"`},
		{`{"_class_name": "DDIMScheduler", "steps_offset": 1.5}`, `"steps_offset": want an integer`},
		{`{"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": "false"}`, `"use_karras_sigmas": want true or false`},
		{`{"_class_name": "DDIMScheduler", "beta_start": "0.1"}`, `"beta_start": want a number`},
		{`{"_class_name": 3}`, `"_class_name": want a string`},
		{`{"_class_name": "DDIMScheduler", "trained_betas": [0.1, "x"]}`, `"trained_betas[1]": want a number`},
		{`{"_class_name": "DDIMScheduler", "trained_betas": {}}`, `"trained_betas": want a list`},
		{`{"_class_name": "DPMSolverMultistepScheduler", "solver_order": "2"}`, `"solver_order"`},
		{`{"_class_name": "DDIMScheduler", "beta_schedule": "sigmoid"}`, "beta_schedule"},
		{`{"_class_name": "DDIMScheduler", "timestep_spacing": "even"}`, "timestep_spacing"},
		{`{"_class_name": "DDIMScheduler", "prediction_type": "flow_prediction"}`, `prediction_type "flow_prediction"`},
		{`{"_class_name": "DPMSolverMultistepScheduler", "final_sigmas_type": "denoise_to_zero"}`, "final_sigmas_type"},
		{`{"_class_name": "LCMScheduler", "original_inference_steps": 0}`, "original_inference_steps 0"},
		{`{"_class_name": "LCMScheduler", "timestep_scaling": -1}`, "timestep_scaling -1"},
		{`{"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true, "sigma_min": 0.1}`, "sigma_min or sigma_max"},
		{`{"_class_name": "DDIMScheduler", "num_train_timesteps": 0}`, "training steps"},
		{`{"_class_name": "DDIMScheduler", "beta_end": 1.5}`, "out of range"},
		{`{"_class_name": "DDIMScheduler",}`, "want a JSON object"},
		{`[1, 2]`, "want a JSON object"},
		{`null`, "want a JSON object"},
		{``, "want a JSON object"},
	} {
		s, err := ParseScheduler([]byte(tc.config))
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: error = %v, want a plain error containing %q", tc.config, err, tc.want)
		}
		if s.Kind != "" || s.Class != "" {
			t.Errorf("%s: got %+v with the error, want the zero Scheduler", tc.config, s)
		}
	}
}

// Python's json writes non-finite floats as bare words; only those outside strings are read as
// numbers.
func TestParseSchedulerNonFinite(t *testing.T) {
	s := mustParse(t, `{"_class_name": "DPMSolverMultistepScheduler", "note": "Infinity, NaN and \"-Infinity\"",
		"lambda_min_clipped": -Infinity, "sigma_min": NaN, "sigma_max": Infinity}`)
	if s.Kind != DPMSolverScheduler {
		t.Errorf("got %+v", s)
	}
	if got := string(allowNonFinite([]byte(`{"a": "NaN", "b": NaN, "c": "x\"Infinity", "d": -Infinity}`))); got !=
		`{"a": "NaN", "b": "NaN", "c": "x\"Infinity", "d": "-Infinity"}` {
		t.Errorf("allowNonFinite: %s", got)
	}
}

func TestSchedulerWith(t *testing.T) {
	sd15 := mustParse(t, sd15Config)
	e := sd15.With(EulerScheduler)
	if e.Kind != EulerScheduler || e.Class != "PNDMScheduler" || e.BetaSchedule != ScaledLinear || e.BetaStart != 0.00085 ||
		e.BetaEnd != 0.012 || e.Spacing != Leading || e.StepsOffset != 1 || e.SetAlphaToOne || !e.FinalSigmasZero {
		t.Errorf("SD 1.5 With(euler) = %+v", e)
	}
	if l := mustLevels(t, e, 50); l[0].Time != 981 || !near(sigmaOf(l[0]), sdSigma981) || !l[50].Clean() {
		t.Errorf("SD 1.5 With(euler) grid starts %+v, ends %+v", l[0], l[50])
	}
	if same := sd15.With(PNDMScheduler); same.Kind != sd15.Kind || same.flags != sd15.flags {
		t.Errorf("With of the same kind changed it")
	}

	// set_alpha_to_one: an Euler file that does not write it gives DDIM's default (true) and
	// PNDM's (false); SDXL's file writes false, which carries over.
	bare := mustParse(t, `{"_class_name": "EulerDiscreteScheduler"}`)
	if !bare.With(DDIMScheduler).SetAlphaToOne || bare.With(PNDMScheduler).SetAlphaToOne || !bare.With(LCMScheduler).SetAlphaToOne {
		t.Errorf("unset set_alpha_to_one: ddim %v pndm %v lcm %v, want true false true",
			bare.With(DDIMScheduler).SetAlphaToOne, bare.With(PNDMScheduler).SetAlphaToOne, bare.With(LCMScheduler).SetAlphaToOne)
	}
	if mustParse(t, sdxlConfig).With(DDIMScheduler).SetAlphaToOne {
		t.Error("SDXL With(ddim): set_alpha_to_one true, want the file's false")
	}
	// DDIM's value is dropped on the way through Euler, as from_config drops it.
	if ddim := mustParse(t, sd21Config); ddim.With(EulerScheduler).With(LCMScheduler).SetAlphaToOne != true {
		t.Error("ddim -> euler -> lcm: set_alpha_to_one kept DDIM's false")
	}

	// final_sigmas_type carries between Euler and DPM-Solver, and is dropped by the others.
	dpm := mustParse(t, strings.Replace(dpmConfig, `"euler_at_final"`, `"final_sigmas_type": "sigma_min", "euler_at_final"`, 1))
	if dpm.FinalSigmasZero || dpm.With(EulerScheduler).FinalSigmasZero || !dpm.With(DDIMScheduler).With(EulerScheduler).FinalSigmasZero {
		t.Errorf("final_sigmas_type sigma_min: dpm %v, euler %v, via ddim %v", dpm.FinalSigmasZero,
			dpm.With(EulerScheduler).FinalSigmasZero, dpm.With(DDIMScheduler).With(EulerScheduler).FinalSigmasZero)
	}

	// LCM's settings: a file's value carries to LCM; leaving LCM resets them.
	lcm := mustParse(t, strings.Replace(lcmConfig, `"original_inference_steps": 50`, `"original_inference_steps": 4`, 1))
	if got := lcm.With(DDIMScheduler).OriginalSteps; got != 50 {
		t.Errorf("lcm -> ddim OriginalSteps %d, want the default 50", got)
	}
	hidden := mustParse(t, `{"_class_name": "DDIMScheduler", "clip_sample": false, "original_inference_steps": 4}`)
	if got := hidden.With(LCMScheduler); got.OriginalSteps != 4 || times(mustLevels(t, got, 2))[1] != 499 {
		t.Errorf("ddim file with original_inference_steps 4 -> lcm: %d", got.OriginalSteps)
	}

	// Built in code: the kind's defaults fill the kind-specific fields; the rest is kept.
	code := Scheduler{Discrete: DefaultSD(), Prediction: "epsilon"}
	for _, kind := range []SchedulerKind{DDIMScheduler, DPMSolverScheduler, LCMScheduler} {
		s := code.With(kind)
		if s.Kind != kind || s.Class != "" || !s.FinalSigmasZero || s.SetAlphaToOne || s.Spacing != Leading {
			t.Errorf("code With(%s) = %+v", kind, s)
		}
		mustLevels(t, s, 4)
	}
	if s := code.With(LCMScheduler); s.OriginalSteps != 50 || s.TimestepScaling != 10 {
		t.Errorf("code With(lcm) = %+v, want LCM's defaults", s)
	}
}

// A Scheduler literal without With still runs: zero OriginalSteps and TimestepScaling mean the
// defaults.
func TestSchedulerLiteral(t *testing.T) {
	s := Scheduler{Kind: LCMScheduler, Discrete: DefaultSD()}
	if got := times(mustLevels(t, s, 4)); !slices.Equal(got, []float64{999, 759, 499, 259}) {
		t.Errorf("literal LCM: %v", got)
	}
	if cSkip, _ := s.LCMBoundary(999); !near(cSkip, 2.5050075037374525e-09) {
		t.Errorf("literal LCM boundary c_skip %v", cSkip)
	}
	if _, err := (Scheduler{Kind: "heun", Discrete: DefaultSD()}).Levels(4); err == nil || !strings.Contains(err.Error(), "heun") {
		t.Errorf("unknown kind: error %v", err)
	}
	if rule, eta := (Scheduler{}).Rule(); rule != "" || eta != 0 {
		t.Errorf("zero Scheduler Rule() = %q, %v", rule, eta)
	}
}

func TestLoadScheduler(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "scheduler_config.json")
	if err := os.WriteFile(path, []byte(sdTurboConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadScheduler(path)
	if err != nil || s.Kind != EulerScheduler || s.Spacing != Trailing {
		t.Fatalf("LoadScheduler = %+v, %v", s, err)
	}

	missing := filepath.Join(dir, "nope.json")
	if _, err := LoadScheduler(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: error %v, want it to name %s", err, missing)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"_class_name": "DDIMScheduler", "steps_offset": "1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadScheduler(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "steps_offset") {
		t.Errorf("bad file: error %v, want it to name the path and the key", err)
	}
	lms := filepath.Join(dir, "lms.json")
	if err := os.WriteFile(lms, []byte(`{"_class_name": "LMSDiscreteScheduler", "beta_schedule": "scaled_linear"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = LoadScheduler(lms)
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), lms) || s.BetaSchedule != ScaledLinear {
		t.Errorf("unsupported class: %+v, %v", s, err)
	}
}
