"""Offscreen camera rendering for LIBERO scenes from a saved copy of the simulation data.

robosuite renders a camera observation inside `env.step()` at the physics substep where its observables sample
(not at the end of the control step). `LiberoEnv` records a copy of `MjData` at exactly that substep and this
renderer draws the cameras from the copy later, only when someone needs a picture. It reproduces robosuite 1.4's
`MjRenderContext.render` + `read_pixels` (same GL context class, MjrContext font scale, 1000-geom scene, fixed
camera, visual meshes only, opengl row order), so images match `OffScreenRenderEnv`'s camera observations
pixel for pixel.

Building an MjrContext uploads every texture (~1 s on a CPU renderer). LIBERO's hard reset recompiles the same
XML every episode, so the context is kept while the model's XML is unchanged.
"""

from __future__ import annotations

import atexit
import contextlib
import weakref

import numpy as np

_LIVE: weakref.WeakSet[CameraRenderer] = weakref.WeakSet()
_ATEXIT_REGISTERED = False


def _close_all() -> None:
    for renderer in list(_LIVE):
        renderer.close()


def _register_atexit() -> None:
    # Registered after robosuite's own `atexit.register(eglTerminate)` (done when its first EGL context is
    # created), so it runs before it: contexts are freed while the display still exists, which avoids the
    # well-known EGL_NOT_INITIALIZED noise from `__del__` at exit (openpi#435).
    global _ATEXIT_REGISTERED
    if not _ATEXIT_REGISTERED:
        atexit.register(_close_all)
        _ATEXIT_REGISTERED = True


class CameraRenderer:
    """One GL context + MjrContext, reused across models compiled from the same XML."""

    def __init__(self, max_width: int = 640, max_height: int = 480):
        self._max_size = (max_width, max_height)
        self._gl = None
        self._con = None
        self._scn = None
        self._model = None
        self._xml: str | None = None
        self._vopt = None
        self._cam = None
        self._pert = None
        _LIVE.add(self)

    def bind(self, model, xml: str) -> None:
        """Use `model` (a mujoco.MjModel) from now on; rebuild the MjrContext only if its XML differs."""
        import mujoco

        if self._gl is None:
            from robosuite.utils.binding_utils import GLContext

            self._gl = GLContext(max_width=self._max_size[0], max_height=self._max_size[1], device_id=-1)
            _register_atexit()
        self._gl.make_current()
        if self._con is None or xml != self._xml:
            self._free_con()
            self._con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
            self._xml = xml
        if model is not self._model:
            self._scn = mujoco.MjvScene(model, maxgeom=1000)
            self._cam = mujoco.MjvCamera()
            self._cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
            self._vopt = mujoco.MjvOption()
            self._vopt.geomgroup[0] = 0  # robosuite: render_collision_mesh=False
            self._vopt.geomgroup[1] = 1  # robosuite: render_visual_mesh=True
            self._pert = mujoco.MjvPerturb()
            self._pert.active = 0
            self._pert.select = 0
            self._pert.skinselect = -1
            self._model = model

    def render(self, data, camera_name: str, height: int, width: int) -> np.ndarray:
        """RGB uint8 (height, width, 3) of a fixed camera, in OpenGL row order (upside down), like robosuite."""
        import mujoco

        if self._model is None:
            raise RuntimeError("CameraRenderer.render called before bind()")
        model = self._model
        if width > self._con.offWidth or height > self._con.offHeight:
            model.vis.global_.offwidth = max(width, model.vis.global_.offwidth)
            model.vis.global_.offheight = max(height, model.vis.global_.offheight)
            self._free_con()
            self._con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera_name)
        if camera_id < 0:
            raise ValueError(f"the scene has no camera {camera_name!r}")
        self._cam.fixedcamid = camera_id
        self._gl.make_current()
        viewport = mujoco.MjrRect(0, 0, width, height)
        mujoco.mjv_updateScene(
            model, data, self._vopt, self._pert, self._cam, mujoco.mjtCatBit.mjCAT_ALL, self._scn
        )
        mujoco.mjr_render(viewport, self._scn, self._con)
        rgb = np.empty((height, width, 3), dtype=np.uint8)
        mujoco.mjr_readPixels(rgb=rgb, depth=None, viewport=viewport, con=self._con)
        return rgb

    def _free_con(self) -> None:
        if self._con is not None:
            with contextlib.suppress(Exception):
                self._con.free()
            self._con = None

    def close(self) -> None:
        if self._gl is not None and self._con is not None:
            with contextlib.suppress(Exception):
                self._gl.make_current()
        self._free_con()
        self._scn = None
        self._model = None
        self._xml = None
        if self._gl is not None:
            gl, self._gl = self._gl, None
            with contextlib.suppress(Exception):
                gl.free()
            # robosuite's GL contexts free themselves again in __del__, after EGL may be terminated at exit
            gl.free = lambda: None
