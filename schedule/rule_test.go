package schedule

import (
	"strings"
	"testing"
)

func TestParseRule(t *testing.T) {
	for in, want := range map[string]Rule{"euler-a": EulerARule, "dpm++2m": DPMpp2MRule, "lcm": LCMRule, " DDIM ": DDIMRule} {
		if r, err := ParseRule(in); err != nil || r != want {
			t.Errorf("ParseRule(%q) = %v, %v; want %v", in, r, err, want)
		}
	}
	if _, err := ParseRule("heun"); err == nil || !strings.Contains(err.Error(), "valid: euler, ddim, ddpm, euler-a, flow-sde, flow-sde-clean, dpm++2m, lcm") {
		t.Errorf("ParseRule(heun) error = %v", err)
	}
	for _, r := range Rules() {
		if got, err := ParseRule(string(r)); err != nil || got != r {
			t.Errorf("ParseRule(%q) = %v, %v", r, got, err)
		}
	}
}
