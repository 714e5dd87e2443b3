# Sourced by scripts/test.sh and the Makefile. OpenBLAS picks its kernels
# from the CPU's model number and falls back to its SSE3 ones (Prescott) on
# CPUs it does not know, such as virtual machines that hide the model
# ("Intel(R) Xeon(R) Processor"): training then runs several times slower.
# Unless OPENBLAS_CORETYPE is already set, pick the kernels from the CPU's
# flags instead. (`instructflow worker` warns when this is needed.)
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -r /proc/cpuinfo ]; then
	if grep -qw avx512f /proc/cpuinfo; then
		export OPENBLAS_CORETYPE=SkylakeX
	elif grep -qw avx2 /proc/cpuinfo; then
		export OPENBLAS_CORETYPE=Haswell
	fi
fi
