package model

// CrossEntropy returns the masked mean negative log-likelihood
// -sum(mask*logp)/sum(mask) over (B,T) positions and writes its gradient
// with respect to logp into dlogp (pass dlogp as Grad.LogProbs). SFT masks
// everything but the response tokens. With an all-zero mask the loss and
// gradient are 0.
func CrossEntropy(dlogp, logp, mask []float32) float32 {
	if len(dlogp) != len(logp) || len(mask) != len(logp) {
		panic("model: cross entropy: dlogp, logp and mask differ in length")
	}
	var count, sum float64
	for i, w := range mask {
		count += float64(w)
		sum += float64(w) * float64(logp[i])
	}
	if count == 0 {
		clear(dlogp)
		return 0
	}
	for i, w := range mask {
		dlogp[i] = -w / float32(count)
	}
	return float32(-sum / count)
}
