package potentials

import (
	"fmt"
	"math"

	"github.com/fksteer/fksteer/internal/enum"
)

// Ramp names how lambda moves over the evaluation steps. The zero value "" means [Constant].
type Ramp string

// The ramps. Strings are the names accepted by [ParseRamp].
const (
	// Constant uses Lambda.Value at every evaluation.
	Constant Ramp = "constant"
	// Linear goes from Lambda.Start to Lambda.Value in equal steps.
	Linear Ramp = "linear"
	// Exponential goes from Lambda.Start to Lambda.Value in equal ratios (geometrically).
	Exponential Ramp = "exponential"
)

// ParseRamp returns the ramp named s, by [enum.Parse]'s rule (case-insensitive, surrounding space
// ignored; "" is [Constant], "exp" is [Exponential]), or an error that lists the valid names.
func ParseRamp(s string) (Ramp, error) {
	return enum.ParseAliases("lambda ramp", s, map[string]Ramp{"": Constant, "exp": Exponential}, Constant, Linear, Exponential)
}

// Lambda is the inverse temperature of the steering target p(x0) exp(lambda r(x0)), with an
// optional ramp over the potential-evaluation steps. Only Value enters the target: the final
// correction uses the last evaluation's lambda, which is always Value. A ramp only changes the
// intermediate potentials (steering gently while rewards of noisy predictions are unreliable).
type Lambda struct {
	// Value is lambda at the last evaluation, and at every evaluation when Ramp is Constant.
	Value float64
	// Start is lambda at the first evaluation of a ramp; ignored when Ramp is Constant.
	Start float64
	// Ramp is how lambda goes from Start to Value; "" means Constant.
	Ramp Ramp
}

// DefaultLambda returns the reference implementation's lambda: 10, constant.
func DefaultLambda() Lambda { return Lambda{Value: 10, Ramp: Constant} }

// Validate returns an error if Value (or, for a ramp, Start) is not finite, the ramp is unknown,
// or an Exponential ramp's Start and Value are not both non-zero with the same sign.
func (l Lambda) Validate() error {
	if math.IsNaN(l.Value) || math.IsInf(l.Value, 0) {
		return fmt.Errorf("potentials: lambda %v is not finite", l.Value)
	}
	switch l.Ramp {
	case "", Constant:
		return nil
	case Linear, Exponential:
	default:
		return fmt.Errorf("potentials: unknown lambda ramp %q (valid: %s, %s, %s)", string(l.Ramp), Constant, Linear, Exponential)
	}
	if math.IsNaN(l.Start) || math.IsInf(l.Start, 0) {
		return fmt.Errorf("potentials: lambda ramp start %v is not finite", l.Start)
	}
	if l.Ramp == Exponential && !(l.Start != 0 && l.Value != 0 && (l.Start > 0) == (l.Value > 0)) {
		return fmt.Errorf("potentials: an exponential lambda ramp needs a start and end of the same sign, neither zero; got %v to %v", l.Start, l.Value)
	}
	return nil
}

// At returns lambda at evaluation i of n (0 <= i < n, see [Schedule.Evaluation] and
// [Schedule.Evaluations]). With f = i/(n-1):
//
//	Constant:    Value
//	Linear:      Start + (Value - Start) f
//	Exponential: Start (Value/Start)^f
//
// so a ramp starts at Start for i = 0 and ends exactly at Value for i = n-1; when n <= 1 it is
// Value. i is clamped into [0, n-1]. l must be valid ([Lambda.Validate]).
func (l Lambda) At(i, n int) float64 {
	if n <= 1 || i >= n-1 || l.Ramp == "" || l.Ramp == Constant {
		return l.Value
	}
	f := float64(max(i, 0)) / float64(n-1)
	if l.Ramp == Exponential {
		return l.Start * math.Pow(l.Value/l.Start, f)
	}
	return l.Start + (l.Value-l.Start)*f
}
