# Builds every GPU kernel of the conv1d op for an H100 (sm_90) on a machine
# without a GPU: MAX reports a broken GPU kernel only as "Failed to compile the
# model", while `mojo build --target-accelerator` prints the real error.
# tests/test_gpu_kernels_build.py runs it; it is never executed.
from max.gpu.host import DeviceContext
from maxconv.ops.conv1d_gpu import KERNEL_ASYNC, KERNEL_BLOCKED, KERNEL_STRIDED, enqueue_conv1d_gpu


def build[dtype: DType](ctx: DeviceContext) raises:
    var a = ctx.enqueue_create_buffer[dtype](1024)
    var b = ctx.enqueue_create_buffer[dtype](1024)
    var c = ctx.enqueue_create_buffer[dtype](1024)
    var pa = a.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var pb = b.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    var pc = c.unsafe_ptr().unsafe_origin_cast[MutAnyOrigin]()
    for kernel in [KERNEL_STRIDED, KERNEL_ASYNC, KERNEL_BLOCKED]:
        enqueue_conv1d_gpu[dtype](ctx, kernel, pa, pb, pc, 1, 100, 0, 0, 3, 100, 4)


def main() raises:
    var ctx = DeviceContext()
    build[DType.float32](ctx)
    build[DType.float64](ctx)
    ctx.synchronize()
