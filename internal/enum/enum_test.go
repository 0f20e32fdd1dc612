package enum

import (
	"errors"
	"fmt"
	"testing"
)

type color string

const (
	red   color = "red"
	green color = "green"
	blue  color = "light-blue"
)

func TestParse(t *testing.T) {
	aliases := map[string]color{"": red, "Verdant": green}
	cases := []struct {
		in      string
		aliases map[string]color
		want    color
		err     string // the whole message; "" for success
	}{
		{in: "red", want: red},
		{in: "RED", want: red},
		{in: "  Light-Blue\t", want: blue},
		{in: "verdant", aliases: aliases, want: green},
		{in: " VERDANT ", aliases: aliases, want: green},
		{in: "", aliases: aliases, want: red},
		{in: "   ", aliases: aliases, want: red},
		{in: "", err: `unknown color "" (valid: red, green, light-blue)`},
		{in: "purple", err: `unknown color "purple" (valid: red, green, light-blue)`},
		{in: "gren", err: `unknown color "gren" (did you mean "green"? valid: red, green, light-blue)`},
		{in: " lightblue ", err: `unknown color " lightblue " (did you mean "light-blue"? valid: red, green, light-blue)`},
		{in: "verdent", aliases: aliases, err: `unknown color "verdent" (valid: red, green, light-blue)`},
		{in: "gren", aliases: aliases, err: `unknown color "gren" (did you mean "green"? valid: red, green, light-blue)`},
		{in: "verdant", err: `unknown color "verdant" (valid: red, green, light-blue)`},
	}
	for _, c := range cases {
		got, err := ParseAliases("color", c.in, c.aliases, red, green, blue)
		if c.err == "" {
			if err != nil || got != c.want {
				t.Errorf("ParseAliases(%q) = %q, %v; want %q", c.in, got, err, c.want)
			}
			continue
		}
		if err == nil || err.Error() != c.err || got != "" {
			t.Errorf("ParseAliases(%q) = %q, %v; want error %s", c.in, got, err, c.err)
		}
		var e *Error
		if !errors.As(err, &e) || e.What != "color" || e.Value != c.in {
			t.Errorf("ParseAliases(%q) error %#v: want an *Error for the color %q", c.in, err, c.in)
		}
	}
}

func TestParseWithoutAliases(t *testing.T) {
	if got, err := Parse("color", "Green", red, green, blue); err != nil || got != green {
		t.Errorf("Parse(Green) = %q, %v", got, err)
	}
}

func TestCheck(t *testing.T) {
	if err := Check("color", green, red, green, blue); err != nil {
		t.Errorf("Check(green) = %v", err)
	}
	err := Check("color", color("Green"), red, green, blue)
	if err == nil || err.Error() != `unknown color "Green" (valid: red, green, light-blue)` {
		t.Errorf("Check(Green) = %v; want an error without a suggestion", err)
	}
}

func ExampleParse() {
	type rule string
	_, err := Parse("sampler", "eulr", rule("euler"), rule("ddim"))
	fmt.Println(err)
	// Output: unknown sampler "eulr" (did you mean "euler"? valid: euler, ddim)
}
