package kernel

import "fmt"

// geluK is sqrt(2/pi).
const geluK = 0.7978845608028654

// Gelu sets out[i] = 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3))) for
// x = inp[i], computed as x*sigmoid(2*sqrt(2/pi)*(x+0.044715*x^3)).
func Gelu(out, inp []float32) {
	if len(out) != len(inp) {
		panic(fmt.Sprintf("kernel: gelu: %d outputs for %d inputs", len(out), len(inp)))
	}
	if len(out) > 0 {
		gelu(out, inp)
	}
}

// GeluBackward multiplies d[i] by the derivative of Gelu at inp[i].
func GeluBackward(d, inp []float32) {
	if len(d) != len(inp) {
		panic(fmt.Sprintf("kernel: gelu backward: %d gradients for %d inputs", len(d), len(inp)))
	}
	if len(d) > 0 {
		geluBackward(d, inp)
	}
}
