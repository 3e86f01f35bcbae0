import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';

interface RefCounted {
  incRef(dataId: object): void;
}

/**
 * Zero-copy `Identity` (and `Cast` to the tensor's own dtype) for the wasm
 * backend: the output shares the input's data and bumps its reference count,
 * as tfjs-backend-cpu's Identity does and wasm's own Reshape already does.
 * Sound because tfjs kernels never write into an existing buffer (data behind
 * a dataId is immutable), and the backend frees it when the last owner goes.
 *
 * Why it matters: tfjs-core's engine clones every tensor a gradient needs
 * (`saveTensorsForBackwardMode` → `clone` → Identity), and wasm 4.22's
 * Identity and Cast copy the whole buffer, so a training step copied each
 * saved activation once more (~470–730 copies per step of the bench model).
 * Anything else (strings, real casts) goes to the original kernel.
 */
export function wasmIdentity(orig: KernelFunc): KernelFunc {
  return (args) => {
    const x = args.inputs.x as TensorInfo;
    if (x.dtype === 'string') return orig(args);
    (args.backend as RefCounted).incRef(x.dataId);
    return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
  };
}

export function wasmCast(orig: KernelFunc): KernelFunc {
  return (args) => {
    const x = args.inputs.x as TensorInfo;
    if (x.dtype === 'string' || args.attrs?.dtype !== x.dtype) return orig(args);
    (args.backend as RefCounted).incRef(x.dataId);
    return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
  };
}
