# Builds every GPU kernel of the conv1d op for an H100 (sm_90) on a machine
# without a GPU: MAX reports a broken GPU kernel only as "Failed to compile the
# model", while `mojo build --target-accelerator` prints the real error.
# tests/test_gpu_kernels_build.py runs it; it is never executed.
from max.gpu.host import DeviceContext
from maxconv.ops.conv1d import _conv1d_gpu_async, _conv1d_gpu_blocked, _conv1d_gpu_strided

def main() raises:
    var ctx = DeviceContext()
    var a = ctx.enqueue_create_buffer[DType.float32](1024)
    var a2 = ctx.enqueue_create_buffer[DType.float32](1024)
    var a3 = ctx.enqueue_create_buffer[DType.float32](1024)
    var b = ctx.enqueue_create_buffer[DType.float64](1024)
    var b2 = ctx.enqueue_create_buffer[DType.float64](1024)
    var b3 = ctx.enqueue_create_buffer[DType.float64](1024)
    ctx.enqueue_function[_conv1d_gpu_blocked[DType.float32, 1024]](a.unsafe_ptr(), a2.unsafe_ptr(), a3.unsafe_ptr(), Int64(1), Int64(100), Int64(4), Int64(1), grid_dim=1, block_dim=128)
    ctx.enqueue_function[_conv1d_gpu_blocked[DType.float64, 512]](b.unsafe_ptr(), b2.unsafe_ptr(), b3.unsafe_ptr(), Int64(1), Int64(100), Int64(4), Int64(1), grid_dim=1, block_dim=128)
    ctx.enqueue_function[_conv1d_gpu_async[DType.float32, 16]](a.unsafe_ptr(), a2.unsafe_ptr(), a3.unsafe_ptr(), Int64(1), Int64(100), Int64(4), Int64(1), Int64(1), grid_dim=1, block_dim=128)
    ctx.enqueue_function[_conv1d_gpu_async[DType.float64, 8]](b.unsafe_ptr(), b2.unsafe_ptr(), b3.unsafe_ptr(), Int64(1), Int64(100), Int64(4), Int64(1), Int64(1), grid_dim=1, block_dim=128)
    ctx.enqueue_function[_conv1d_gpu_strided[DType.float32, 8]](a.unsafe_ptr(), a2.unsafe_ptr(), a3.unsafe_ptr(), Int64(1), Int64(100), Int64(4), Int64(1), grid_dim=1, block_dim=256)
    ctx.enqueue_function[_conv1d_gpu_strided[DType.float64, 8]](b.unsafe_ptr(), b2.unsafe_ptr(), b3.unsafe_ptr(), Int64(1), Int64(100), Int64(4), Int64(1), grid_dim=1, block_dim=256)
    ctx.synchronize()
