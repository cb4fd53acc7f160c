from .service import SshService

SshService.launch_instance()
