package potentials_test

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/fksteer/fksteer/potentials"
)

func evalSteps(s potentials.Schedule, n int) []int {
	var steps []int
	for step := -1; step <= n; step++ {
		if s.Evaluates(step, n) {
			steps = append(steps, step)
		}
	}
	return steps
}

func TestScheduleEvaluates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		s     potentials.Schedule
		n     int
		steps []int
	}{
		{"defaults, 100 steps", potentials.Defaults(), 100, []int{5, 10, 15, 20, 25, 30, 99}},
		{"defaults, 20 steps: End past the run", potentials.Defaults(), 20, []int{5, 10, 15, 19}},
		{"defaults, 31 steps: End is the final step", potentials.Defaults(), 31, []int{5, 10, 15, 20, 25, 30}},
		{"defaults, 6 steps: Start is the final step", potentials.Defaults(), 6, []int{5}},
		{"defaults, 3 steps: final only", potentials.Defaults(), 3, []int{2}},
		{"one step", potentials.Defaults(), 1, []int{0}},
		{"no steps", potentials.Defaults(), 0, nil},
		{"every step", potentials.Schedule{Every: 1, Start: 0, End: 100}, 4, []int{0, 1, 2, 3}},
		{"End not on the grid", potentials.Schedule{Every: 4, Start: 1, End: 10}, 50, []int{1, 5, 9, 49}},
		{"Start == End", potentials.Schedule{Every: 7, Start: 3, End: 3}, 10, []int{3, 9}},
	} {
		got := evalSteps(tc.s, tc.n)
		if !slices.Equal(got, tc.steps) {
			t.Errorf("%s: evaluation steps %v, want %v", tc.name, got, tc.steps)
		}
		if e := tc.s.Evaluations(tc.n); e != len(tc.steps) {
			t.Errorf("%s: Evaluations = %d, want %d", tc.name, e, len(tc.steps))
		}
		// Evaluation indices count 0, 1, 2, ... along the steps.
		for want, step := range tc.steps {
			if i, ok := tc.s.Evaluation(step, tc.n); !ok || i != want {
				t.Errorf("%s: Evaluation(%d) = %d, %v; want %d, true", tc.name, step, i, ok, want)
			}
		}
	}
}

func TestShouldResample(t *testing.T) {
	for _, tc := range []struct {
		threshold float64
		ess       float64
		k         int
		want      bool
	}{
		{0, 4, 4, true}, // not adaptive: always
		{0, 1, 4, true},
		{0.5, 1.9, 4, true},
		{0.5, 2, 4, false}, // strictly below the threshold
		{0.5, 3, 4, false},
		{1, 3.999, 4, true},
		{1, 4, 4, false},
		{0.25, 1.5, 8, true},
		{0.25, 2.5, 8, false},
	} {
		s := potentials.Schedule{Every: 1, ESSThreshold: tc.threshold}
		if got := s.ShouldResample(tc.ess, tc.k); got != tc.want {
			t.Errorf("threshold %v: ShouldResample(ess %v, k %d) = %v, want %v", tc.threshold, tc.ess, tc.k, got, tc.want)
		}
	}
}

func TestScheduleValidate(t *testing.T) {
	if err := potentials.Defaults().Validate(); err != nil {
		t.Errorf("Defaults: %v", err)
	}
	if d := potentials.Defaults(); d.Every != 5 || d.Start != 5 || d.End != 30 || d.ESSThreshold != 0 || d.DropUnresampledWeights {
		t.Errorf("Defaults = %+v, want the reference's every 5 from 5 to 30, not adaptive", d)
	}
	for _, ok := range []potentials.Schedule{
		{Every: 1, Start: 0, End: 0},
		{Every: 20, Start: 0, End: 100, ESSThreshold: 0.5},
		{Every: 1, End: 1, ESSThreshold: 1, DropUnresampledWeights: true},
	} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
	for _, tc := range []struct {
		s    potentials.Schedule
		want string
	}{
		{potentials.Schedule{Every: 0, Start: 0, End: 10}, "every"},
		{potentials.Schedule{Every: -5, Start: 0, End: 10}, "every"},
		{potentials.Schedule{Every: 5, Start: -1, End: 10}, "start"},
		{potentials.Schedule{Every: 5, Start: 11, End: 10}, "after end"},
		{potentials.Schedule{Every: 5, End: 10, ESSThreshold: -0.1}, "threshold"},
		{potentials.Schedule{Every: 5, End: 10, ESSThreshold: 1.5}, "threshold"},
		{potentials.Schedule{Every: 5, End: 10, ESSThreshold: math.NaN()}, "threshold"},
	} {
		err := tc.s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one mentioning %q", tc.s, err, tc.want)
		}
	}
}

func TestLambdaAt(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    potentials.Lambda
		n    int
		want []float64 // at i = 0..n-1
	}{
		{"constant", potentials.Lambda{Value: 10}, 3, []float64{10, 10, 10}},
		{"constant ignores start", potentials.Lambda{Value: 10, Start: 1, Ramp: potentials.Constant}, 2, []float64{10, 10}},
		{"linear", potentials.Lambda{Value: 10, Start: 0, Ramp: potentials.Linear}, 3, []float64{0, 5, 10}},
		{"linear down", potentials.Lambda{Value: 1, Start: 3, Ramp: potentials.Linear}, 5, []float64{3, 2.5, 2, 1.5, 1}},
		{"exponential", potentials.Lambda{Value: 100, Start: 1, Ramp: potentials.Exponential}, 3, []float64{1, 10, 100}},
		{"exponential 4", potentials.Lambda{Value: 8, Start: 1, Ramp: potentials.Exponential}, 4, []float64{1, 2, 4, 8}},
		{"exponential negative", potentials.Lambda{Value: -4, Start: -1, Ramp: potentials.Exponential}, 3, []float64{-1, -2, -4}},
		{"single evaluation is Value", potentials.Lambda{Value: 7, Start: 1, Ramp: potentials.Linear}, 1, []float64{7}},
	} {
		if err := tc.l.Validate(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for i, w := range tc.want {
			if got := tc.l.At(i, tc.n); math.Abs(got-w) > 1e-12*math.Max(1, math.Abs(w)) {
				t.Errorf("%s: At(%d, %d) = %v, want %v", tc.name, i, tc.n, got, w)
			}
		}
		if got := tc.l.At(tc.n-1, tc.n); got != tc.l.Value {
			t.Errorf("%s: last evaluation %v, want exactly Value %v", tc.name, got, tc.l.Value)
		}
		if got := tc.l.At(tc.n+5, tc.n); got != tc.l.Value {
			t.Errorf("%s: past the end %v, want Value", tc.name, got)
		}
	}
}

func TestLambdaValidate(t *testing.T) {
	if err := potentials.DefaultLambda().Validate(); err != nil || potentials.DefaultLambda().Value != 10 {
		t.Errorf("DefaultLambda %+v: %v", potentials.DefaultLambda(), err)
	}
	for _, bad := range []potentials.Lambda{
		{Value: math.NaN()},
		{Value: math.Inf(1)},
		{Value: 1, Ramp: "cosine"},
		{Value: 1, Start: math.NaN(), Ramp: potentials.Linear},
		{Value: 1, Start: 0, Ramp: potentials.Exponential},
		{Value: 1, Start: -1, Ramp: potentials.Exponential},
		{Value: 0, Start: 1, Ramp: potentials.Exponential},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestParseRamp(t *testing.T) {
	for in, want := range map[string]potentials.Ramp{
		"": potentials.Constant, "constant": potentials.Constant, " Linear ": potentials.Linear,
		"exp": potentials.Exponential, "EXPONENTIAL": potentials.Exponential,
	} {
		if got, err := potentials.ParseRamp(in); err != nil || got != want {
			t.Errorf("ParseRamp(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := potentials.ParseRamp("cosine"); err == nil || !strings.Contains(err.Error(), "linear") {
		t.Errorf("ParseRamp(cosine): error %v, want one listing the valid ramps", err)
	}
}

func TestScaledSchedule(t *testing.T) {
	for _, c := range []struct {
		n                 int
		every, start, end int
	}{{100, 5, 5, 60}, {50, 3, 3, 30}, {8, 1, 1, 4}, {1, 1, 1, 1}, {20, 1, 1, 12}} {
		s := potentials.ScaledSchedule(c.n)
		if s.Every != c.every || s.Start != c.start || s.End != c.end {
			t.Errorf("ScaledSchedule(%d) = %+v, want every %d from %d to %d", c.n, s, c.every, c.start, c.end)
		}
		if err := s.Validate(); err != nil {
			t.Errorf("ScaledSchedule(%d) is invalid: %v", c.n, err)
		}
	}
}
