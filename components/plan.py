"""Component: the configurations a procedure fans out over (backbones x modes x image types)."""

from kfp import dsl

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def plan(backbones: str, modes: str = "frozen,finetune", images: str = "full,roi") -> list:
    """Comma-separated choices in, one ``{backbone, mode, roi}`` item per configuration out."""
    from lumbar.steps.plan import plan_step

    return [config.metadata() for config in plan_step(backbones=backbones, modes=modes, images=images)]
