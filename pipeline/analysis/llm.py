class LLMCaptioner:
    @classmethod
    def from_config(cls, config):
        return None
